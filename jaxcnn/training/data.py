"""Image-classification data as plain NumPy arrays.

``load(name, split)`` returns ``(images, labels)``: images float32
``(N, H, W, C)`` scaled to [0, 1] (channels-last, as everywhere in jaxcnn) and
labels int32 ``(N,)``. Three kinds of ``name`` are accepted:

* ``"mnist-sample"``: real MNIST digits bundled with the package (5,000 train,
  500 per class; the canonical 10,000 test digits), so everything works offline.
* ``"idx:DIR"``: a directory of MNIST-format IDX files, gzip-compressed or raw.
* any other name: a tensorflow-datasets image-classification dataset
  (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``, ...), read through TFDS'
  random-access ``data_source`` (ArrayRecord files, no TensorFlow needed once
  prepared; preparing a dataset the first time needs TensorFlow and a network).

Every file is validated completely (magic number, dimensions, exact byte count,
label range); anything malformed raises a ``ValueError`` naming the file and the
defect, never a silently wrong array.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import pathlib
import socket
import struct
import zlib
from typing import Callable, Tuple

import numpy as np

SPLITS = ("train", "test")
SAMPLE_NAME = "mnist-sample"
SAMPLE_DIR = pathlib.Path(__file__).parent / "mnist_sample"
IDX_PREFIX = "idx:"
IDX_NUM_CLASSES = 10
NAME_FORMS = (
    f'"{SAMPLE_NAME}", "{IDX_PREFIX}DIR" (a directory of MNIST IDX files) or a '
    'tensorflow-datasets image-classification name such as "mnist", '
    '"fashion_mnist" or "cifar10"'
)
TFDS_INSTALL_HINT = 'pip install "jaxcnn[tfds]" (TensorFlow) to prepare datasets the first time'
DOWNLOAD_HOST = ("storage.googleapis.com", 443)

# IDX type codes (third byte of the magic number) and their big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
# File-name stems per split, in order of preference (full MNIST before the 5k sample).
_IDX_STEMS = {"train": ("train", "train-5k"), "test": ("t10k",)}
_RECORDS_PER_READ = 1024

Arrays = Tuple[np.ndarray, np.ndarray]


def check_split(split: str) -> str:
    """Validates a ``split`` argument: one of ``SPLITS``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def load(name: str, split: str, data_dir: str | None = None) -> Arrays:
    """Loads one split of an image-classification data set.

    Args:
      name: ``"mnist-sample"``, ``"idx:DIR"`` or a TFDS dataset name.
      split: ``"train"`` or ``"test"``.
      data_dir: TFDS data directory (default: TFDS' own, ``~/tensorflow_datasets``);
        unused by ``"mnist-sample"`` and ``"idx:DIR"``.

    Returns:
      ``(images, labels)``: images float32 ``(N, H, W, C)`` in [0, 1], labels
      int32 ``(N,)`` in ``[0, num_classes)``.

    Raises:
      ValueError: bad ``name``/``split``, or missing or malformed data.
      ImportError: a TFDS dataset must be prepared and TensorFlow is missing.
      RuntimeError: a TFDS dataset must be downloaded and there is no network.
    """
    check_split(split)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be {NAME_FORMS}, got {name!r}")
    if name == SAMPLE_NAME:
        images, labels = load_idx_dir(SAMPLE_DIR, split)
    elif name.startswith(IDX_PREFIX):
        images, labels = load_idx_dir(_idx_directory(name), split)
    else:
        images, labels = _load_tfds(name, split, data_dir)
    return to_float_images(images), labels.astype(np.int32)


def num_classes(name: str, data_dir: str | None = None) -> int:
    """Number of classes of ``name`` (10 for ``"mnist-sample"`` and ``"idx:DIR"``)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be {NAME_FORMS}, got {name!r}")
    if name == SAMPLE_NAME or name.startswith(IDX_PREFIX):
        return IDX_NUM_CLASSES
    return _tfds_builder(name, data_dir).info.features["label"].num_classes


def to_float_images(images: np.ndarray) -> np.ndarray:
    """Scales uint8 images ``(N, H, W, C)`` to float32 in [0, 1]."""
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 to be scaled to [0, 1], got {images.dtype}")
    return images.astype(np.float32) / np.float32(255)


# --------------------------------------------------------------------------- IDX


def read_idx(path) -> np.ndarray:
    """Reads one IDX file (``.gz`` or raw) into an array of its declared shape.

    Args:
      path: the file; a name ending in ``.gz`` is decompressed first.

    Returns:
      An array in native byte order with the header's dtype and shape.

    Raises:
      ValueError: missing file, corrupt gzip, bad magic number, or a byte count
        that differs from what the header declares (truncated or trailing bytes).
    """
    path = pathlib.Path(path)
    return _parse_idx(_read_bytes(path), path)


def _read_bytes(path: pathlib.Path) -> bytes:
    if not path.is_file():
        raise ValueError(f"IDX file {path} does not exist")
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is not a valid gzip file ({error})") from error


def _parse_idx(data: bytes, path: pathlib.Path) -> np.ndarray:
    if len(data) < 4:
        raise ValueError(f"{path} holds {len(data)} bytes, too few for an IDX magic number (4)")
    code, ndim = data[2], data[3]
    if data[:2] != b"\x00\x00" or code not in _IDX_DTYPES:
        codes = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise ValueError(
            f"{path} has magic number 0x{data[:4].hex()}, not an IDX file: expected "
            f"0x0000 then a type code in ({codes}) then the number of dimensions"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated inside its header ({len(data)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        defect = "is truncated" if len(data) < expected else "has trailing bytes"
        raise ValueError(
            f"{path} {defect}: its header declares shape {shape} ({expected} bytes "
            f"in all) but it holds {len(data)} bytes"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _read_mnist_idx(path: pathlib.Path, ndim: int) -> np.ndarray:
    """Reads an MNIST IDX file: uint8 with ``ndim`` dimensions (magic 0x0000080{ndim})."""
    array = read_idx(path)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise ValueError(
            f"{path} holds a {array.ndim}-d {array.dtype} array; MNIST "
            f"{'images' if ndim == 3 else 'labels'} are {ndim}-d uint8 (magic 0x0000080{ndim})"
        )
    return array


def _idx_directory(name: str) -> pathlib.Path:
    directory = name[len(IDX_PREFIX):]
    if not directory:
        raise ValueError(
            f'name "{IDX_PREFIX}DIR" needs a directory after "{IDX_PREFIX}", got {name!r}'
        )
    return pathlib.Path(directory).expanduser()


def _find_file(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def idx_files(directory, split: str) -> Tuple[pathlib.Path, pathlib.Path]:
    """Finds the images and labels IDX files of ``split`` in ``directory``.

    Looks for ``{stem}-images-idx3-ubyte`` and ``{stem}-labels-idx1-ubyte``, raw or
    ``.gz``, with stem ``train`` (preferred) or ``train-5k`` for the train split
    and ``t10k`` for the test split.

    Returns:
      ``(images_path, labels_path)``.

    Raises:
      ValueError: the directory or one of the two files is missing.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise ValueError(f"IDX directory {directory} does not exist or is not a directory")
    for stem in _IDX_STEMS[check_split(split)]:
        images = _find_file(directory, f"{stem}-images-idx3-ubyte")
        if images is not None:
            labels = _find_file(directory, f"{stem}-labels-idx1-ubyte")
            if labels is None:
                raise ValueError(
                    f"{directory} has {images.name} but no {stem}-labels-idx1-ubyte[.gz]"
                )
            return images, labels
    looked_for = ", ".join(f"{stem}-images-idx3-ubyte[.gz]" for stem in _IDX_STEMS[split])
    raise ValueError(f"no {split} images in {directory}: looked for {looked_for}")


def load_idx_dir(directory, split: str) -> Arrays:
    """Reads ``split`` from a directory of MNIST IDX files (see ``idx_files``).

    Returns:
      ``(images, labels)``: uint8 ``(N, H, W, 1)`` and uint8 ``(N,)`` in [0, 10).
    """
    images_path, labels_path = idx_files(directory, split)
    images = _read_mnist_idx(images_path, ndim=3)
    labels = _read_mnist_idx(labels_path, ndim=1)
    if len(images) != len(labels):
        raise ValueError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} "
            f"holds {len(labels)} labels"
        )
    check_labels(labels, IDX_NUM_CLASSES, str(labels_path))
    return images[..., None], labels


def check_labels(labels: np.ndarray, classes: int, source: str) -> np.ndarray:
    """Checks that ``labels`` ``(N,)`` is non-empty with every entry in ``[0, classes)``."""
    if labels.size == 0:
        raise ValueError(f"{source} holds no examples")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        raise ValueError(f"{source} has labels in [{low}, {high}]; expected [0, {classes - 1}]")
    return labels


# -------------------------------------------------------------------------- TFDS


def _tfds_builder(name: str, data_dir: str | None):
    """A TFDS builder writing/reading ArrayRecord; checks it has image and label."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(f"name must be {NAME_FORMS}; no such TFDS dataset: {name!r}") from error
    features = builder.info.features
    keys = set(features.keys()) if hasattr(features, "keys") else set()
    if not {"image", "label"} <= keys or not hasattr(features["label"], "num_classes"):
        raise ValueError(
            f"name {name!r} is a TFDS dataset but not an image-classification one: it needs "
            f"an 'image' feature and a ClassLabel 'label' feature, it has {sorted(keys)}"
        )
    return builder


def _tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _network_reachable(address=DOWNLOAD_HOST, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``address`` opens within ``timeout`` seconds."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def _prepare(builder, name: str) -> None:
    """Downloads and prepares a TFDS dataset, failing fast when that cannot work."""
    where = builder.data_dir
    if not _tensorflow_available():
        raise ImportError(
            f"TFDS {name!r} is not prepared in {where} and TensorFlow is not installed; "
            f"{TFDS_INSTALL_HINT}"
        )
    if not _network_reachable():
        raise RuntimeError(
            f"TFDS {name!r} is not prepared in {where} and {DOWNLOAD_HOST[0]} is "
            "unreachable (offline?), so it cannot be downloaded"
        )
    builder.download_and_prepare()


def _is_prepared(builder) -> bool:
    """``builder.is_prepared()``, without the absl ``WARNING ... has no dataset_info.json`` that
    TFDS logs when the dataset's version directory does not exist at all (never prepared)."""
    from etils import epath  # pylint: disable=import-outside-toplevel  # TFDS' path library

    return epath.Path(builder.data_dir).exists() and builder.is_prepared()


def _tfds_source(name: str, split: str, data_dir: str | None):
    """Opens TFDS' random-access source of ``split``, preparing the dataset if needed."""
    builder = _tfds_builder(name, data_dir)
    try:
        return builder, builder.as_data_source(split=split)
    except Exception as error:  # pylint: disable=broad-except
        if _is_prepared(builder):
            raise ValueError(f"cannot read TFDS {name!r} split {split!r}: {error}") from error
    _prepare(builder, name)
    return builder, builder.as_data_source(split=split)


def _read_records(source, keys):
    """Reads records in one batched call where the source supports it."""
    try:
        records = source.__getitems__(keys)
    except TypeError:  # tfds.testing.mock_data's __getitems__ is not bound (tfds 4.9)
        records = [source[key] for key in keys]
    return records


def _load_tfds(name: str, split: str, data_dir: str | None) -> Arrays:
    """Reads a whole TFDS split into ``(images, labels)``: uint8 ``(N, H, W, C)``, ``(N,)``."""
    builder, source = _tfds_source(name, split, data_dir)
    image_feature = builder.info.features["image"]
    shape = tuple(image_feature.shape)
    if None in shape or image_feature.np_dtype != np.uint8:
        raise ValueError(
            f"TFDS {name!r} images are {image_feature.np_dtype} of shape {shape}; "
            "jaxcnn needs uint8 images of one fixed (H, W, C) shape"
        )
    count = len(source)
    images = np.empty((count, *shape), np.uint8)
    labels = np.empty((count,), np.int64)
    for start in range(0, count, _RECORDS_PER_READ):
        keys = list(range(start, min(count, start + _RECORDS_PER_READ)))
        records = _read_records(source, keys)
        images[start:start + len(keys)] = [record["image"] for record in records]
        labels[start:start + len(keys)] = [record["label"] for record in records]
    classes = builder.info.features["label"].num_classes
    check_labels(labels, classes, f"TFDS {name!r} split {split!r}")
    return images, labels


# ------------------------------------------------------------- the mnist default


def _short_reason(error: Exception, limit: int = 200) -> str:
    line = (str(error).splitlines() or [type(error).__name__])[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def resolve_mnist(data_dir: str | None = None, notice: Callable[[str], None] = print) -> str:
    """Chooses the data set behind ``--dataset mnist``: TFDS ``"mnist"`` or the sample.

    Opens (preparing if needed) TFDS ``mnist``; if that fails for any reason (not
    prepared and no TensorFlow, no network, ...) it calls ``notice`` once with a
    one-line explanation and falls back to the bundled ``"mnist-sample"``.

    Args:
      data_dir: TFDS data directory, as for ``load``.
      notice: receives the one-line fallback message.

    Returns:
      ``"mnist"`` or ``"mnist-sample"``, a name to pass to ``load``.
    """
    try:
        _tfds_source("mnist", "train", data_dir)
        return "mnist"
    except Exception as error:  # pylint: disable=broad-except
        notice(
            f"jaxcnn: TFDS 'mnist' unavailable ({_short_reason(error)}); using the bundled "
            "mnist-sample (5,000 train / 10,000 test digits)"
        )
        return SAMPLE_NAME


def load_default_mnist(
    split: str, data_dir: str | None = None, notice: Callable[[str], None] = print
) -> Arrays:
    """``load(resolve_mnist(data_dir, notice), split, data_dir)``.

    Each call may emit the notice; to load both splits with a single notice, call
    ``resolve_mnist`` once and ``load`` the name it returns.

    Returns:
      ``(images, labels)`` as for ``load``.
    """
    check_split(split)
    return load(resolve_mnist(data_dir, notice), split, data_dir)
