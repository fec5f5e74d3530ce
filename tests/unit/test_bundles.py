"""Bundle extraction and manifest validation: every refusal names its entry; the happy paths extract."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from evaluator.bundles import BundleLimits, extract_bundle, read_manifest
from evaluator.errors import BundleInvalid, FrameworkUnsupported

MANIFEST = b"name: iris-logreg\nversion: 1.0.0\nframework: sklearn\nmodel: model.joblib\n"


def make_tar(path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]], *, gz: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as archive:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special_entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def make_zip(path: Path, entries: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def good_entries() -> list:
    return [file_entry("evaluator.yaml", MANIFEST), file_entry("model.joblib", b"not really a model")]


# --- happy paths -----------------------------------------------------------------------


def test_tar_gz_bundle_extracts_with_its_manifest(tmp_path):
    archive = make_tar(tmp_path / "b.tar.gz", good_entries())

    manifest = extract_bundle(archive, tmp_path / "out")

    assert (manifest.name, manifest.version, manifest.framework, manifest.model) == (
        "iris-logreg", "1.0.0", "sklearn", "model.joblib")
    assert manifest.root == tmp_path / "out"
    assert (tmp_path / "out" / "model.joblib").read_bytes() == b"not really a model"
    assert stat.S_IMODE((tmp_path / "out" / "model.joblib").stat().st_mode) == 0o644


def test_zip_bundle_in_a_top_level_folder_with_custom_predict(tmp_path):
    manifest_text = b"name: m\nversion: 2\nframework: pytorch\nmodel: weights\npredict: predict.py:predict\n"
    archive = make_zip(tmp_path / "b.zip", {"m/evaluator.yaml": manifest_text, "m/predict.py": b"def predict(b): 0",
                                            "m/weights/w.bin": b"\0" * 10})

    manifest = extract_bundle(archive, tmp_path / "out")

    assert manifest.root == tmp_path / "out" / "m"
    assert manifest.predict == "predict.py:predict" and manifest.version == "2"


def test_json_manifest_and_kind_detected_by_magic_bytes_not_name(tmp_path):
    archive = make_zip(tmp_path / "misnamed.tar.gz", {"evaluator.json": b'{"name": "j", "version": "1", '
                                                      b'"framework": "onnx", "model": "m.onnx"}', "m.onnx": b"x"})

    assert extract_bundle(archive, tmp_path / "out").framework == "onnx"


def test_a_small_very_compressible_bundle_is_fine(tmp_path):
    archive = make_tar(tmp_path / "b.tar.gz", [*good_entries(), file_entry("zeros.bin", b"\0" * 1_000_000)])

    extract_bundle(archive, tmp_path / "out")


# --- refusals: paths, links, special files -------------------------------------------


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil-absolute.txt"])
def test_tar_slip_and_absolute_paths_are_refused(tmp_path, name):
    archive = make_tar(tmp_path / "b.tar.gz", [*good_entries(), file_entry(name, b"pwned")])

    with pytest.raises(BundleInvalid, match=name.replace(".", r"\.")):
        extract_bundle(archive, tmp_path / "deep" / "out")

    assert not (tmp_path / "deep" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "..\\evil.txt", "C:/evil.txt"])
def test_zip_slip_and_absolute_paths_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "b.zip", {"evaluator.yaml": MANIFEST, "model.joblib": b"m", name: b"pwned"})

    with pytest.raises(BundleInvalid, match="evil"):
        extract_bundle(archive, tmp_path / "deep" / "out")

    assert not (tmp_path / "deep" / "evil.txt").exists()


@pytest.mark.parametrize("kind,target", [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.SYMTYPE, "../../outside"),
                                         (tarfile.SYMTYPE, "model.joblib"), (tarfile.LNKTYPE, "/etc/passwd"),
                                         (tarfile.LNKTYPE, "model.joblib")])
def test_tar_symlinks_and_hard_links_are_refused(tmp_path, kind, target):
    archive = make_tar(tmp_path / "b.tar.gz", [*good_entries(), special_entry("link", kind, target)])

    with pytest.raises(BundleInvalid, match="'link': links are not allowed"):
        extract_bundle(archive, tmp_path / "out")

    assert not (tmp_path / "out" / "link").exists()


def test_zip_symlink_is_refused(tmp_path):
    archive = make_zip(tmp_path / "b.zip", {"evaluator.yaml": MANIFEST, "model.joblib": b"m"},
                       symlinks={"escape": "/etc/passwd"})

    with pytest.raises(BundleInvalid, match="'escape': links are not allowed"):
        extract_bundle(archive, tmp_path / "out")


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_nodes_and_fifos_are_refused(tmp_path, kind):
    archive = make_tar(tmp_path / "b.tar.gz", [*good_entries(), special_entry("dev/null", kind)])

    with pytest.raises(BundleInvalid, match="'dev/null': devices, fifos"):
        extract_bundle(archive, tmp_path / "out")


# --- refusals: sizes, counts, bombs -----------------------------------------------------


def test_gzip_bomb_is_refused_while_streaming(tmp_path):
    # 64 MiB of zeros compress about 1000:1; the limit is checked on decompressed bytes.
    archive = make_tar(tmp_path / "bomb.tar.gz", [*good_entries(), file_entry("zeros.bin", b"\0" * (64 << 20))])
    limits = BundleLimits(max_ratio=100, ratio_grace_bytes=1 << 20)

    with pytest.raises(BundleInvalid, match="'?zeros.bin'?: compression ratio over 100"):
        extract_bundle(archive, tmp_path / "out", limits)

    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written < 8 << 20  # stopped early, not after writing the whole bomb


def test_single_gzip_layer_lying_about_nothing_is_measured_not_trusted(tmp_path):
    # A bare gzip stream (no tar inside) decompressing to garbage: refused as corrupt, never written.
    path = tmp_path / "b.tgz"
    path.write_bytes(gzip.compress(b"\xff" * 4096))

    with pytest.raises(BundleInvalid, match="corrupt"):
        extract_bundle(path, tmp_path / "out")


def test_zip_bomb_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"evaluator.yaml": MANIFEST, "model.joblib": b"m",
                                               "zeros.bin": b"\0" * (32 << 20)})

    with pytest.raises(BundleInvalid, match="zeros.bin"):
        extract_bundle(archive, tmp_path / "out", BundleLimits(max_ratio=100, ratio_grace_bytes=1 << 20))


def test_total_size_over_the_limit_is_refused(tmp_path):
    archive = make_tar(tmp_path / "b.tar", [*good_entries(), file_entry("big.bin", b"x" * 200_000)], gz=False)

    with pytest.raises(BundleInvalid, match="big.bin.*more than 100000 bytes"):
        extract_bundle(archive, tmp_path / "out", BundleLimits(max_bytes=100_000))


def test_too_many_files_is_refused(tmp_path):
    entries = [*good_entries(), *(file_entry(f"f{i}.txt", b"x") for i in range(20))]
    archive = make_tar(tmp_path / "b.tar.gz", entries)

    with pytest.raises(BundleInvalid, match="more than 10 files"):
        extract_bundle(archive, tmp_path / "out", BundleLimits(max_files=10))


def test_not_an_archive_is_refused(tmp_path):
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"just some bytes, not an archive" * 20)

    with pytest.raises(BundleInvalid, match="model.tar.gz: not a .tar.gz or .zip archive"):
        extract_bundle(path, tmp_path / "out")


def test_duplicate_entry_is_refused(tmp_path):
    archive = make_tar(tmp_path / "b.tar.gz", [*good_entries(), file_entry("model.joblib", b"again")])

    with pytest.raises(BundleInvalid, match="'model.joblib': duplicate entry"):
        extract_bundle(archive, tmp_path / "out")


# --- refusals: manifest -------------------------------------------------------------------


def test_missing_manifest_is_refused(tmp_path):
    archive = make_tar(tmp_path / "b.tar.gz", [file_entry("model.joblib", b"m")])

    with pytest.raises(BundleInvalid, match="no manifest: the bundle needs evaluator.yaml"):
        extract_bundle(archive, tmp_path / "out")


def test_unknown_framework_is_refused_with_its_own_code(tmp_path):
    manifest = MANIFEST.replace(b"sklearn", b"caffe")
    archive = make_tar(tmp_path / "b.tar.gz", [file_entry("evaluator.yaml", manifest), file_entry("model.joblib", b"")])

    with pytest.raises(FrameworkUnsupported, match="framework 'caffe' is not supported") as caught:
        extract_bundle(archive, tmp_path / "out")
    assert caught.value.code == "framework_unsupported"


def test_yaml_alias_bomb_is_refused(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [*{previous},*{previous},*{previous},*{previous},*{previous},*{previous}]")
    bomb = ("\n".join(lines) + "\nname: x\nversion: 1\nframework: sklearn\nmodel: model.joblib\n").encode()
    archive = make_tar(tmp_path / "b.tar.gz", [file_entry("evaluator.yaml", bomb), file_entry("model.joblib", b"")])

    with pytest.raises(BundleInvalid, match="evaluator.yaml: YAML anchors and aliases are not allowed"):
        extract_bundle(archive, tmp_path / "out")


def test_oversized_manifest_is_refused(tmp_path):
    (tmp_path / "evaluator.yaml").write_bytes(MANIFEST + b"# " + b"x" * 70_000 + b"\n")
    (tmp_path / "model.joblib").write_bytes(b"")

    with pytest.raises(BundleInvalid, match="larger than 65536 bytes"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("text,message", [
    (b"name: x\nversion: 1\nframework: sklearn\n", "'model' is required"),
    (b"name: x\nversion: 1\nframework: sklearn\nmodel: missing.joblib\n", "'missing.joblib' does not exist"),
    (b"name: x\nversion: 1\nframework: sklearn\nmodel: ../etc/passwd\n", "must be a relative path inside"),
    (b"name: x\nversion: 1\nframework: sklearn\nmodel: /etc/passwd\n", "must be a relative path inside"),
    (b"name: 'bad name!'\nversion: 1\nframework: sklearn\nmodel: model.joblib\n", "name 'bad name!'"),
    (b"name: x\nversion: 1\nframework: sklearn\nmodel: model.joblib\npredict: predict.py\n", "predict 'predict.py'"),
    (b"- just\n- a list\n", "must be a mapping"),
    (b"name: [unclosed\n", "not valid YAML"),
])
def test_invalid_manifests_are_refused(tmp_path, text, message):
    (tmp_path / "evaluator.yaml").write_bytes(text)
    (tmp_path / "model.joblib").write_bytes(b"")

    with pytest.raises(BundleInvalid, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(tmp_path)
