"""``open_detector``: the one place where a model source becomes a detector.

Every command that takes a MODEL (eval, calibrate, export, predict, bench) and the Python API
(``detkit.load_model``) resolve it here, so every source works everywhere:

- a ready detector object (anything with ``predict_table`` and ``class_map``): returned as is;
- a run directory: its ``checkpoints/best.pt``, else ``checkpoints/last.pt``;
- a detkit checkpoint (recipe and class map inside);
- ``recipe:NAME`` or a recipe YAML, with optional ``weights`` (randomly initialised without);
- an exported ``model.onnx`` (onnxruntime, or OpenVINO with ``backend="openvino"`` and the ``openvino`` extra);
- bare foreign weights without a recipe: an official RT-DETR v1/v2 ``.pth``, Hugging Face ``model.safetensors``
  (or ``.bin``/``.pth``), or detkit-layout ``.safetensors``; the architecture is inferred from the tensor shapes
  (each family's ``read_foreign``, :mod:`detkit.models.families`) and 80-class heads get COCO's class map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.inference.classes import coco80_class_map, default_class_map, read_class_map
from detkit.inference.types import DEFAULT_IMGSZ, Detector

if TYPE_CHECKING:
    from detkit.data.dataset import DatasetSpec

SOURCE_HINT = (
    "pass a run dir, a checkpoint or weights file (.pt, .pth, .bin, .safetensors), model.onnx, "
    "or recipe:NAME with weights"
)
EXPORTED_BACKENDS = ("onnxruntime", "openvino")  # runtimes of an exported .onnx file; the first is the default
REINIT_HINT = (
    "use the classes the weights were trained on, or reinit_head=True (--reinit-head) to re-initialise "
    "the class heads for fine-tuning"
)


def find_run_checkpoint(run_dir: str | Path) -> Path:
    """``checkpoints/best.pt`` of a run directory, else ``checkpoints/last.pt``."""
    run_dir = Path(run_dir)
    for name in ("best.pt", "last.pt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise DetkitError(
        "run directory has no checkpoints/best.pt or checkpoints/last.pt",
        path=run_dir,
        hint="pass a run directory written by `detkit train`, or a checkpoint file",
    )


def is_recipe_source(source: str | Path) -> bool:
    return str(source).startswith("recipe:") or Path(str(source)).suffix in (".yaml", ".yml")


def _requested_classes(class_map: Any) -> tuple[ClassMap | None, str]:
    """(class map, how messages name it) from a ClassMap, a loaded dataset, a dataset.yaml or a names file."""
    if class_map is None or isinstance(class_map, ClassMap):
        return class_map, "the requested class map"
    if hasattr(class_map, "class_map") and hasattr(class_map, "path"):
        return class_map.class_map, f"dataset {class_map.path}"  # a DatasetSpec
    return read_class_map(class_map), f"classes of {class_map}"


def _with_path(e: DetkitError, path: Path | str) -> DetkitError:
    """The same error naming the user's file (conversion code does not know it)."""
    return e if str(path) in e.message else DetkitError(e.message, hint=e.hint, path=path)


def open_detector(
    source: Any,
    *,
    weights: str | Path | None = None,
    device: Any = None,
    class_map: ClassMap | DatasetSpec | str | Path | None = None,
    reinit_head: bool = False,
    imgsz: int | Sequence[int] | None = None,
    threads: int | None = None,
    batch_size: int = 8,
    backend: str | None = None,
) -> Detector:
    """A :class:`Detector` (``TorchDetector`` or ``OnnxDetector``) from any supported model source (module doc).

    ``weights`` goes with ``recipe:NAME`` / a recipe file. ``class_map`` (a ``ClassMap``, a loaded dataset, a
    dataset.yaml or a names file) names the classes to predict: weights without a class map take it as their
    own (their class count must match unless ``reinit_head``); weights with one must agree unless
    ``reinit_head`` re-initialises the class heads. ``imgsz`` overrides the input size (default: the recipe's;
    for foreign weights the size an official v2 file's anchors were made for, else 640). ``threads`` sets CPU
    threads (torch: process-wide). ``device``: cpu, cuda, cuda:N or auto.
    """
    check_backend(backend)
    if hasattr(source, "predict_table") and hasattr(source, "class_map"):
        if backend is not None and getattr(source, "backend", None) != backend:
            raise DetkitError(
                f"backend='{backend}' does not apply to a ready {getattr(source, 'backend', 'other')} detector",
                hint="pass the exported .onnx file instead",
            )
        return source
    if source is None or not isinstance(source, (str, Path)):
        raise DetkitError(f"cannot open a model from {type(source).__name__}", hint=SOURCE_HINT)
    requested, label = _requested_classes(class_map)
    src = str(source)
    if src.lower().endswith(".onnx"):
        if weights is not None:
            raise DetkitError(
                "weights= does not apply to an exported ONNX model (its weights are inside the graph)", path=src
            )
        return open_exported(
            src,
            backend or EXPORTED_BACKENDS[0],
            device=device,
            class_map=requested,
            imgsz=imgsz,
            threads=threads,
            batch_size=batch_size,
            class_map_label=label,
        )
    if backend is not None:
        raise DetkitError(
            f"backend='{backend}' runs exported .onnx files, and this model is not one",
            path=src,
            hint="export it with `detkit export onnx` and pass the .onnx file, or leave backend out",
        )
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    if is_recipe_source(src):
        return _from_recipe(src, weights, device, requested, label, reinit_head, imgsz, batch_size)
    if weights is not None:
        raise DetkitError(
            "weights= goes with recipe:NAME or a recipe file, not with a run, checkpoint or weights file",
            hint=f"open_detector('recipe:rtdetr-r18', weights='{weights}') / MODEL recipe:NAME --weights",
        )
    path = Path(src)
    if not path.exists():
        raise DetkitError("model not found", hint=SOURCE_HINT, path=path)
    if path.is_dir():
        path = find_run_checkpoint(path)
    from detkit.models.checkpoint import read_weights_file

    wf = read_weights_file(path)
    if wf.recipe is not None:  # a detkit checkpoint
        from detkit.config.recipe import resolve_recipe

        recipe = resolve_recipe(wf.recipe)
        return _build(
            recipe,
            wf.state_dict,
            wf.class_map,
            path,
            device,
            requested,
            label,
            reinit_head,
            imgsz,
            batch_size,
            recipe_given=False,
        )
    return _from_bare_weights(wf.state_dict, path, device, requested, label, reinit_head, imgsz, batch_size)


def check_backend(backend: str | None) -> None:
    if backend is not None and backend not in EXPORTED_BACKENDS:
        raise DetkitError(
            f"unknown backend '{backend}' for an exported model", hint=f"choose from {', '.join(EXPORTED_BACKENDS)}"
        )


def exported_runtime(backend: str) -> tuple[type, Any]:
    """(detector class, opener) of the runtime ``backend`` for exported ``.onnx`` files: the one place that maps a
    backend name to its code (``open_detector`` and ``detkit.stages.bench`` use it)."""
    check_backend(backend)
    if backend == "openvino":
        from detkit.inference.openvino_detector import OpenVinoDetector, import_openvino, open_openvino

        import_openvino()  # a missing extra fails here, before any work
        return OpenVinoDetector, open_openvino
    from detkit.inference.onnx_detector import OnnxDetector, open_onnx

    return OnnxDetector, open_onnx


def open_exported(path: str | Path, backend: str, **options: Any) -> Detector:
    """An exported ``.onnx`` file in the runtime ``backend`` (``open_detector``'s options)."""
    return exported_runtime(backend)[1](path, **options)


def _from_recipe(src, weights, device, requested, label, reinit_head, imgsz, batch_size) -> Detector:
    from detkit.config.recipe import resolve_recipe

    recipe = resolve_recipe(src)
    if weights is None:
        return _build(recipe, None, None, None, device, requested, label, reinit_head, imgsz, batch_size, True)
    from detkit.models.checkpoint import read_weights_file
    from detkit.models.families import check_weights_family

    wf = read_weights_file(weights)
    check_weights_family(recipe.family, wf.state_dict, wf.recipe, str(wf.path))
    return _build(
        recipe,
        wf.state_dict,
        wf.class_map,
        wf.path,
        device,
        requested,
        label,
        reinit_head,
        imgsz,
        batch_size,
        recipe_given=True,
    )


def _from_bare_weights(state, path: Path, device, requested, label, reinit_head, imgsz, batch_size) -> Detector:
    from detkit.config.recipe import resolve_recipe
    from detkit.models.families import read_foreign_weights

    try:
        _, foreign = read_foreign_weights(state)
    except DetkitError as e:
        raise _with_path(e, path) from None
    recipe = resolve_recipe(f"recipe:{foreign.recipe}")
    recipe = recipe.model_copy(update={"model": foreign.config})
    if imgsz is None:
        imgsz = foreign.imgsz or DEFAULT_IMGSZ
    return _build(recipe, state, None, path, device, requested, label, reinit_head, imgsz, batch_size, False)


def _recipe_imgsz(recipe: Any) -> int:
    train = getattr(recipe, "train", None)
    return int(getattr(train, "imgsz", DEFAULT_IMGSZ) or DEFAULT_IMGSZ)


def _build(
    recipe,
    state: Mapping | None,
    weights_map: ClassMap | None,
    origin: Path | None,
    device,
    requested: ClassMap | None,
    label: str,
    reinit_head: bool,
    imgsz,
    batch_size: int,
    recipe_given: bool,
) -> Detector:
    from detkit.inference.torch_detector import TorchDetector
    from detkit.models.families import read_foreign_weights
    from detkit.utils.device import resolve_device

    dev = resolve_device(device)  # a bad device fails before any model is built
    mismatch_message = None
    if requested is None:
        if weights_map is not None:
            class_map = weights_map
        elif state is not None:
            try:
                class_map = default_class_map(read_foreign_weights(state)[1].num_classes)
            except DetkitError as e:
                raise _with_path(e, origin) from None
        else:
            class_map = coco80_class_map()
    else:
        class_map = requested
        if weights_map is not None and weights_map != requested:
            if not reinit_head:
                weights_map.check_same(requested, f"weights {origin}", label, hint=REINIT_HINT)
            mismatch_message = f"{origin}: class map differs"

    module = recipe.family.build_model(recipe.model, len(class_map))
    if state is not None:
        try:
            recipe.family.load_weights(
                module, state, reinit_head=reinit_head, source=str(origin), class_mismatch_message=mismatch_message
            )
        except DetkitError as e:
            raise _fit_error(e, state, origin, recipe_given) from None
    module.eval()
    size = imgsz if imgsz is not None else _recipe_imgsz(recipe)
    return TorchDetector(module, class_map, size, device=dev, recipe=recipe, batch_size=batch_size, source=origin)


def _fit_error(e: DetkitError, state: Mapping, origin: Path | None, recipe_given: bool) -> DetkitError:
    """A recipe that does not fit the weights: say what the weights are, so the user can drop the recipe."""
    e = _with_path(e, origin) if origin is not None else e
    if "class" in e.message:
        return e
    from detkit.models.families import read_foreign_weights, weights_hint

    if not recipe_given:  # the architecture came from these very weights: they are not a whole supported model
        return DetkitError(e.message, hint=weights_hint())
    try:
        _, foreign = read_foreign_weights(state)
    except DetkitError:
        return e
    looks = f"the weights look like {foreign.summary}; pass the weights file alone as MODEL to build that architecture"
    return DetkitError(e.message, hint=looks)
