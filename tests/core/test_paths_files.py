import pytest

from detkit.errors import DetkitError
from detkit.utils.files import read_json, read_yaml
from detkit.utils.paths import resolve_inside


@pytest.mark.parametrize("bad", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "C:\\x.jpg", "", "a\\..\\..\\x"])
def test_resolve_inside_refuses_escapes(tmp_path, bad):
    with pytest.raises(DetkitError):
        resolve_inside(tmp_path, bad, source=tmp_path / "dataset.yaml")


def test_resolve_inside_refuses_symlink_escape(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(DetkitError, match="outside"):
        resolve_inside(root, "link/secret.txt")


def test_resolve_inside_accepts_nested(tmp_path):
    assert resolve_inside(tmp_path, "images/train/a.jpg") == (tmp_path / "images/train/a.jpg").resolve()


def test_read_yaml_never_executes_tags(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.yaml"
    f.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(DetkitError, match="tag not allowed"):
        read_yaml(f)
    assert not marker.exists()


def test_read_yaml_reports_line_of_syntax_error(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(DetkitError, match=r"bad.yaml: malformed YAML \(line \d+"):
        read_yaml(f)


def test_read_json_reports_line_and_missing(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text('{"images": [\n  1,\n}')
    with pytest.raises(DetkitError, match=r"bad.json: malformed JSON \(line 3"):
        read_json(f)
    with pytest.raises(DetkitError, match="not found"):
        read_json(tmp_path / "missing.json")
