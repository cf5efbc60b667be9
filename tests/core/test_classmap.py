import numpy as np
import pytest

from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError


def test_model_order_follows_sorted_category_ids():
    cm = ClassMap.from_coco_categories([{"id": 7, "name": "b"}, {"id": 3, "name": "a"}])
    assert cm.names == ("a", "b") and cm.category_ids == (3, 7)
    assert cm.labels_to_category_ids(np.array([1, 0, 1])).tolist() == [7, 3, 7]
    assert cm.category_ids_to_labels(np.array([7, 3])).tolist() == [1, 0]


def test_unknown_category_ids_are_named():
    cm = ClassMap(("a", "b"), (1, 2))
    with pytest.raises(DetkitError, match=r"unknown category ids \[5\]"):
        cm.category_ids_to_labels(np.array([1, 5]))


@pytest.mark.parametrize("names,ids", [(("a", "a"), (1, 2)), (("a", "b"), (1, 1)), ((), ()), (("a",), (1, 2))])
def test_invalid_class_maps_are_refused(names, ids):
    with pytest.raises(DetkitError):
        ClassMap(names, ids)


def test_mismatch_error_names_both_maps():
    a = ClassMap(("cat", "dog"), (1, 2))
    b = ClassMap(("dog", "cat"), (1, 2))
    a.check_same(ClassMap.from_dict(a.to_dict()), "checkpoint", "dataset")
    with pytest.raises(DetkitError, match="checkpoint has 2 classes.*cat.*dataset has 2 classes.*dog"):
        a.check_same(b, "checkpoint", "dataset")
