"""A deterministic generator of Spotify daily-chart dumps with a hidden truth.

    from hit_platform.generator import generate, GeneratorConfig, FAULT_KINDS
    manifest = generate(GeneratorConfig(out_dir=Path("warehouse/landing"), seed=42))

writes `charts_history.<ext>` and one `charts_<YYYY-MM-DD>.<ext>` per increment
day into out_dir, the oracle (true per-country probabilities) and
`manifest.json` into truth_dir. See `dump.generate` for the steps,
`faults` for the faults it can inject and `taste.TasteShift` for the concept
shift it can inject (`GeneratorConfig(taste_shift="latam:120:1:anglo")`). `worlds` holds the zoo of
tastes a world can have (`GeneratorConfig(world_name="sparse")`), and `world_oracle(config)` gives the
world's truth as a function of a song's 14 features (`true_oracle`).
"""

from hit_platform.generator.config import FAULT_KINDS, GeneratorConfig
from hit_platform.generator.dump import MANIFEST_NAME, ORACLE_NAME, generate
from hit_platform.generator.taste import TasteShift
from hit_platform.generator.true_oracle import Oracle, oracle_from_manifest, world_oracle
from hit_platform.generator.worlds import DEFAULT_WORLD, WORLDS

__all__ = ["DEFAULT_WORLD", "FAULT_KINDS", "GeneratorConfig", "MANIFEST_NAME", "ORACLE_NAME", "Oracle", "TasteShift",
           "WORLDS", "generate", "oracle_from_manifest", "world_oracle"]
