"""A deterministic generator of Spotify daily-chart dumps with a hidden truth.

    from hit_platform.generator import generate, GeneratorConfig, FAULT_KINDS
    manifest = generate(GeneratorConfig(out_dir=Path("warehouse/landing"), seed=42))

writes `charts_history.<ext>` and one `charts_<YYYY-MM-DD>.<ext>` per increment
day into out_dir, the oracle (true per-country probabilities) and
`manifest.json` into truth_dir. See `dump.generate` for the steps and
`faults` for the faults it can inject.
"""

from hit_platform.generator.config import FAULT_KINDS, GeneratorConfig
from hit_platform.generator.dump import MANIFEST_NAME, ORACLE_NAME, generate

__all__ = ["FAULT_KINDS", "GeneratorConfig", "MANIFEST_NAME", "ORACLE_NAME", "generate"]
