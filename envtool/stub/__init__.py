"""triton_python_backend_stub for a (release, Python, CPU/GPU, arch) target: prebuilt from the
nvidia-pytriton wheels or built from source with CMake, checked by ELF parsing, kept in a
content-addressed store."""
