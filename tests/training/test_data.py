"""Tests for jaxcnn.training.data: the bundled MNIST sample, IDX directories, TFDS.

No test touches the network: an autouse fixture makes every socket connection
fail loudly, TFDS is exercised under ``tfds.testing.mock_data`` and through a tiny
dataset builder prepared offline in a temporary directory.
"""

import gzip
import hashlib
import shutil
import socket
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxcnn.training import data

SAMPLE_MD5 = {  # from shared/data/mnist/README.md
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-5k-images-idx3-ubyte.gz": "81edc6ee08338daf429913bd1a71a8ff",
    "train-5k-labels-idx1-ubyte.gz": "12a57e01969d72ff608d06fba11a36a0",
}
# Per-class counts of the canonical MNIST test set, and its first ten labels.
TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TEST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"test tried to use the network: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


# ------------------------------------------------------------------ helpers


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An independent IDX encoder: magic, big-endian dimensions, big-endian data."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[type_code]
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_mnist(directory, stem="train", count=4, size=3, gz=True, labels=None):
    """Writes ``{stem}-images-idx3-ubyte`` and ``{stem}-labels-idx1-ubyte`` files."""
    directory.mkdir(parents=True, exist_ok=True)
    images = np.arange(count * size * size, dtype=np.uint8).reshape(count, size, size)
    labels = np.arange(count, dtype=np.uint8) % 10 if labels is None else labels
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        payload = idx_bytes(array)
        name = f"{stem}-{kind}-ubyte" + (".gz" if gz else "")
        (directory / name).write_bytes(gzip.compress(payload) if gz else payload)
    return images, labels


# ------------------------------------------------------------ bundled sample


def test_sample_files_are_the_readme_files():
    for name, md5 in SAMPLE_MD5.items():
        assert hashlib.md5((data.SAMPLE_DIR / name).read_bytes()).hexdigest() == md5, name
    assert "CC BY-SA 3.0" in (data.SAMPLE_DIR / "README.md").read_text()


def test_sample_train_is_5000_digits_500_per_class():
    images, labels = data.load("mnist-sample", "train")
    assert images.shape == (5000, 28, 28, 1) and images.dtype == np.float32
    assert labels.shape == (5000,) and labels.dtype == np.int32
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 500))  # sorted by class


def test_sample_test_is_the_canonical_mnist_test_set():
    images, labels = data.load("mnist-sample", "test")
    assert images.shape == (10000, 28, 28, 1) and images.dtype == np.float32
    assert labels.shape == (10000,) and labels.dtype == np.int32
    assert images.min() == 0.0 and images.max() == 1.0
    np.testing.assert_array_equal(labels[:10], TEST_FIRST_LABELS)
    np.testing.assert_array_equal(np.bincount(labels), TEST_CLASS_COUNTS)
    assert abs(images.mean() - 0.1325) < 1e-3  # the well-known MNIST test-set pixel mean


def test_num_classes_of_local_sets():
    assert data.num_classes("mnist-sample") == 10
    assert data.num_classes("idx:/anywhere") == 10


# ---------------------------------------------------------------- idx:DIR


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_idx_dir_reads_a_copy_of_the_sample(tmp_path, gz):
    for name in SAMPLE_MD5:
        if gz:
            shutil.copy(data.SAMPLE_DIR / name, tmp_path / name)
        else:
            raw = gzip.decompress((data.SAMPLE_DIR / name).read_bytes())
            (tmp_path / name[: -len(".gz")]).write_bytes(raw)
    for split in data.SPLITS:
        expected = data.load("mnist-sample", split)
        got = data.load(f"idx:{tmp_path}", split)
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_idx_dir_scales_exactly(tmp_path):
    images, labels = write_mnist(tmp_path, "t10k", count=3, size=5)
    got_images, got_labels = data.load(f"idx:{tmp_path}", "test")
    np.testing.assert_array_equal(got_images[..., 0], images.astype(np.float32) / 255)
    np.testing.assert_array_equal(got_labels, labels)


def test_idx_dir_prefers_full_train_over_5k(tmp_path):
    write_mnist(tmp_path, "train-5k", count=5)
    write_mnist(tmp_path, "train", count=3, gz=False)
    assert data.load(f"idx:{tmp_path}", "train")[0].shape == (3, 3, 3, 1)


@pytest.mark.parametrize(
    "type_code, dtype", [(0x08, np.uint8), (0x0B, np.int16), (0x0D, np.float32)]
)
def test_read_idx_round_trips_idx_types(tmp_path, type_code, dtype):
    offset = 0 if dtype == np.uint8 else -100  # negatives and multi-byte big-endian values
    array = (np.arange(24).reshape(2, 3, 4) * 11 + offset).astype(dtype)
    (tmp_path / "a.idx").write_bytes(idx_bytes(array, type_code))
    got = data.read_idx(tmp_path / "a.idx")
    assert got.dtype == dtype and got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, array)


def _corrupt(path, edit):
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(edit(raw)))


CORRUPTIONS = {
    # name: (edit of train-images raw bytes, message pattern)
    "truncated": (lambda b: b[:-1], r"train-images-idx3-ubyte.gz is truncated.*\(4, 3, 3\)"),
    "trailing bytes": (
        lambda b: b + b"\x00",
        r"has trailing bytes: .*\(52 bytes in all\) but it holds 53 bytes",
    ),
    "wrong magic": (
        lambda b: b"\x12\x34\x56\x78" + b[4:],
        r"magic number 0x12345678, not an IDX file",
    ),
    "bad type code": (lambda b: b"\x00\x00\x07" + b[3:], r"magic number 0x00000703"),
    "labels-like images": (
        lambda b: idx_bytes(np.zeros(4, np.uint8)),
        r"holds a 1-d uint8 array; MNIST images are 3-d uint8 \(magic 0x00000803\)",
    ),
    "int16 images": (
        lambda b: idx_bytes(np.zeros((4, 3, 3), np.uint8), 0x0B),
        r"3-d int16 array; MNIST images are 3-d uint8",
    ),
    "header cut": (lambda b: b[:9], r"truncated inside its header \(9 of 16 bytes\)"),
    "empty": (lambda b: b"", r"holds 0 bytes, too few"),
}


@pytest.mark.parametrize("edit, match", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_idx_corrupt_images_raise(tmp_path, edit, match):
    write_mnist(tmp_path)
    _corrupt(tmp_path / "train-images-idx3-ubyte.gz", edit)
    with pytest.raises(ValueError, match=match):
        data.load(f"idx:{tmp_path}", "train")


def test_wrong_magic_number_is_named(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match=r"x.idx has magic number 0x01000801, not an IDX file"):
        data.read_idx(tmp_path / "x.idx")


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"this is not gzip", r"train-labels-idx1-ubyte.gz is not a valid gzip file"),
        (gzip.compress(b"\x00" * 64)[:-9], r"train-labels-idx1-ubyte.gz is not a valid gzip file"),
    ],
    ids=["not gzip", "truncated gzip"],
)
def test_idx_bad_gzip_raises(tmp_path, payload, match):
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(payload)
    with pytest.raises(ValueError, match=match):
        data.load(f"idx:{tmp_path}", "train")


def test_idx_count_mismatch_raises(tmp_path):
    write_mnist(tmp_path, count=4, labels=np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"holds 4 images but train-labels-idx1-ubyte.gz holds 3"):
        data.load(f"idx:{tmp_path}", "train")


def test_idx_label_out_of_range_raises(tmp_path):
    write_mnist(tmp_path, count=2, labels=np.array([3, 10], np.uint8))
    with pytest.raises(ValueError, match=r"labels in \[3, 10\]; expected \[0, 9\]"):
        data.load(f"idx:{tmp_path}", "train")


def test_idx_missing_files_and_dir_raise(tmp_path):
    write_mnist(tmp_path)
    with pytest.raises(ValueError, match=r"no test images in .*: looked for t10k-images-idx3-ubyte"):
        data.load(f"idx:{tmp_path}", "test")
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match=r"has train-images-idx3-ubyte.gz but no train-labels"):
        data.load(f"idx:{tmp_path}", "train")
    with pytest.raises(ValueError, match=r"IDX directory .*nowhere does not exist"):
        data.load(f"idx:{tmp_path / 'nowhere'}", "train")
    with pytest.raises(ValueError, match=r"IDX file .*missing.gz does not exist"):
        data.read_idx(tmp_path / "missing.gz")


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'val'"):
        data.load("mnist-sample", "val")
    with pytest.raises(ValueError, match=r"needs a directory after \"idx:\", got 'idx:'"):
        data.load("idx:", "train")
    with pytest.raises(ValueError, match=r"name must be .*mnist-sample.*idx:DIR.*got ''"):
        data.load("", "train")
    with pytest.raises(ValueError, match=r"no such TFDS dataset: 'no_such_dataset_xyz'"):
        data.load("no_such_dataset_xyz", "train")


# --------------------------------------------------------------------- TFDS


class JaxcnnTinyDigits(tfds.core.GeneratorBasedBuilder):
    """A 3-class dataset that TFDS prepares without TensorFlow (a Tensor image)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = {
            "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=3),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(1500), "test": self._generate_examples(7)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"image": np.full((4, 4, 1), i % 256, np.uint8), "label": i % 3}


class JaxcnnTinyText(JaxcnnTinyDigits):
    """Not an image-classification dataset."""

    def _info(self):
        features = tfds.features.FeaturesDict({"text": tfds.features.Text()})
        return tfds.core.DatasetInfo(builder=self, features=features)


def _allow_preparation(monkeypatch):
    monkeypatch.setattr(data, "_tensorflow_available", lambda: True)
    monkeypatch.setattr(data, "_network_reachable", lambda *args, **kwargs: True)


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=9):
        images, labels = data.load(name, "train")
        assert data.num_classes(name) == 10
    assert images.shape == (9, *shape) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0
    assert labels.shape == (9,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() < 10


def test_tfds_prepares_then_reads_in_batches(tmp_path, monkeypatch):
    _allow_preparation(monkeypatch)
    images, labels = data.load("jaxcnn_tiny_digits", "train", data_dir=str(tmp_path))
    assert images.shape == (1500, 4, 4, 1) and labels.shape == (1500,)  # > one batch of reads
    np.testing.assert_array_equal(np.sort(labels), np.sort(np.arange(1500) % 3))
    # Record order is TFDS' (shuffled), but each image still matches its own label.
    index = np.rint(images[:, 0, 0, 0] * 255).astype(int)
    assert sorted(index.tolist()) == sorted((np.arange(1500) % 256).tolist())
    monkeypatch.setattr(data, "_prepare", lambda *args: pytest.fail("prepared twice"))
    test_images, test_labels = data.load("jaxcnn_tiny_digits", "test", data_dir=str(tmp_path))
    assert test_images.shape == (7, 4, 4, 1) and test_labels.dtype == np.int32
    assert data.num_classes("jaxcnn_tiny_digits", data_dir=str(tmp_path)) == 3


def test_tfds_rejects_non_image_datasets(tmp_path):
    with pytest.raises(ValueError, match=r"'jaxcnn_tiny_text' .*not an image-classification"):
        data.load("jaxcnn_tiny_text", "train", data_dir=str(tmp_path))


def test_tfds_unprepared_without_tensorflow_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_tensorflow_available", lambda: False)
    with pytest.raises(ImportError, match=r'not prepared in .* pip install "jaxcnn\[tfds\]"'):
        data.load("mnist", "train", data_dir=str(tmp_path))


def test_tfds_unprepared_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_tensorflow_available", lambda: True)
    monkeypatch.setattr(data, "_network_reachable", lambda *args, **kwargs: False)
    with pytest.raises(RuntimeError, match=r"storage.googleapis.com is unreachable"):
        data.load("mnist", "train", data_dir=str(tmp_path))


def test_network_probe(monkeypatch):
    def refuse(address, timeout):
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert data._network_reachable() is False
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: open(__file__))
    assert data._network_reachable() is True


# ----------------------------------------------------------- mnist default


def test_default_mnist_falls_back_with_one_notice(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_tensorflow_available", lambda: False)
    lines = []
    images, labels = data.load_default_mnist("test", data_dir=str(tmp_path), notice=lines.append)
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("jaxcnn: TFDS 'mnist' unavailable (")
    assert lines[0].endswith("using the bundled mnist-sample (5,000 train / 10,000 test digits)")
    expected_images, expected_labels = data.load("mnist-sample", "test")
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_default_mnist_uses_tfds_when_available():
    lines = []
    with tfds.testing.mock_data(num_examples=5):
        assert data.resolve_mnist(notice=lines.append) == "mnist"
        images, _ = data.load_default_mnist("train", notice=lines.append)
    assert lines == [] and images.shape == (5, 28, 28, 1)
