"""Dataset formats: readers and writers that all convert through the in-memory :class:`DatasetData`.

- :mod:`.coco_folder`: a detkit ``dataset.yaml``, a plain COCO JSON, or a folder of ``annotations/*.json``.
- :mod:`.yolo`: the ultralytics layout (``data.yaml``, ``images/<split>``, ``labels/<split>``).
- :mod:`.voc`: Pascal VOC (``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``).
- :mod:`.fiftyone_io`: any dataset type FiftyOne can import or export (the ``fiftyone`` extra).
- :mod:`.detect`: guess the format of a source path (``--from auto``).

Formats that cannot carry everything COCO can (category ids, image and annotation ids, crowd regions,
segmentation areas) get a small sidecar, ``detkit_meta.json`` (see :mod:`.sidecar`), that other tools ignore.
"""

from detkit.data.formats.base import DatasetData, SplitData

__all__ = ["DatasetData", "SplitData"]
