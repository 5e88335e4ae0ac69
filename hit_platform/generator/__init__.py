"""A deterministic generator of Spotify daily-chart dumps with a hidden truth.

    from hit_platform.generator import generate, GeneratorConfig, FAULT_KINDS
    manifest = generate(GeneratorConfig(out_dir=Path("warehouse/landing"), seed=42))

writes `charts_history.<ext>` and one `charts_<YYYY-MM-DD>.<ext>` per increment
day into out_dir, the oracle (true per-country probabilities) and
`manifest.json` into truth_dir. See `dump.generate` for the steps,
`faults` for the faults it can inject and `taste.TasteShift` for the concept
shift it can inject (`GeneratorConfig(taste_shift="latam:120:1:anglo")`).
"""

from hit_platform.generator.config import FAULT_KINDS, GeneratorConfig
from hit_platform.generator.dump import MANIFEST_NAME, ORACLE_NAME, generate
from hit_platform.generator.taste import TasteShift

__all__ = ["FAULT_KINDS", "GeneratorConfig", "MANIFEST_NAME", "ORACLE_NAME", "TasteShift", "generate"]
