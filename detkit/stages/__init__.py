"""The stage entry points, side by side: each is a plain function the CLI, the examples and the tests call alike.

| stage | function | CLI |
|---|---|---|
| train | :func:`detkit.stages.train.train` | ``detkit train`` |
| evaluate | :func:`detkit.stages.evaluate.evaluate` | ``detkit eval`` |
| calibrate | :func:`detkit.stages.calibrate.calibrate` | ``detkit calibrate`` |
| export | :func:`detkit.export.export_model` (1) | ``detkit export`` |
| predict | :func:`detkit.stages.predict.predict` | ``detkit predict`` |
| bench | :func:`detkit.stages.bench.benchmark` | ``detkit bench`` |
| quickstart | :func:`detkit.stages.quickstart.run_quickstart` | ``detkit quickstart`` |

(1) the export package is the stage: one module per target.

They sit above the inference layer (:mod:`detkit.inference`) and the libraries (engine, export, explain,
slicing); nothing below imports them (docs/architecture.md, "Which package may import which").
"""
