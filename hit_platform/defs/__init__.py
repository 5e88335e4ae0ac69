"""The asset graph, one module per concern; `hit_platform.definitions` assembles it."""


def asset_modules() -> list:
    """One module per key prefix = lake schema = group; each holds its assets and the checks on them.
    (A function: the modules import `defs.gate_policy`, which reads this list only when an asset runs.)"""
    from hit_platform.defs import core, landing, ops, raw, serving
    from hit_platform.defs.maintenance import batch_tables, history, lake
    from hit_platform.defs.ml import evaluation, explanations, features, predictions, shadow, training

    return [landing, raw, core, features, training, evaluation, shadow, predictions, explanations, serving, ops, lake,
            batch_tables, history]
