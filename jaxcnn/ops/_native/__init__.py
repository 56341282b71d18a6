"""The native part of :mod:`jaxcnn.ops.onednn`: its C++ source and the loader that builds it on first use."""
