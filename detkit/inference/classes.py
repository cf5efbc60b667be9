"""Class maps for weights that carry none: COCO's 80 classes, generic names, or a user's dataset / names file."""

from __future__ import annotations

from pathlib import Path

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError

# COCO's 80 classes in model order: what official and Hugging Face weights predict
COCO80_NAMES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)
COCO80_IDS = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    27,
    28,
    31,
    32,
    33,
    34,
    35,
    36,
    37,
    38,
    39,
    40,
    41,
    42,
    43,
    44,
    46,
    47,
    48,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    67,
    70,
    72,
    73,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    82,
    84,
    85,
    86,
    87,
    88,
    89,
    90,
)


def coco80_class_map() -> ClassMap:
    return ClassMap(COCO80_NAMES, COCO80_IDS)


def default_class_map(num_classes: int) -> ClassMap:
    """COCO's map for 80-class weights, else generic names ``class_i`` with ids 0..K−1."""
    if num_classes == 80:
        return coco80_class_map()
    return ClassMap.from_names([f"class_{i}" for i in range(num_classes)], first_id=0)


def read_class_map(path: str | Path) -> ClassMap:
    """A class map from a ``dataset.yaml`` (or its folder) or a names file (one class per line, ids 1..K)."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in (".yaml", ".yml"):
        from detkit.data.dataset import load_dataset

        return load_dataset(path).class_map
    if not path.is_file():
        raise DetkitError(
            "class names file not found",
            path=path,
            hint="pass a dataset.yaml or a text file with one class name per line",
        )
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DetkitError(f"cannot read class names ({type(e).__name__})", path=path) from None
    names = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not names:
        raise DetkitError("class names file is empty", hint="one class name per line, in model order", path=path)
    try:
        return ClassMap.from_names(names)
    except DetkitError as e:
        raise DetkitError(e.message, hint=e.hint, path=path) from None
