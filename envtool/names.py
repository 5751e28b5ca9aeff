"""Triton's names for what a python model is made of, defined once: the files Triton looks up, the config
parameters envtool sets, the variable Triton expands, and how the release's launcher starts a stub
(python_backend src/stub_launcher.cc, src/pb_utils.cc; core src/model_config_utils.cc)."""

CONFIG = "config.pbtxt"
PYTHON_FILE = "model.py"
STUB_NAME = "triton_python_backend_stub"  # a model folder's own stub, as Triton looks it up
STUB_ELF_NAME = "triton_python_backend_stub.elf"  # the real stub behind envtool's launcher (launcher.py)
ENSEMBLE = "ensemble"
ENV_KEY = "EXECUTION_ENV_PATH"
FORCE_CPU_KEY = "FORCE_CPU_ONLY_INPUT_TENSORS"
MODEL_DIR_VAR = "$$TRITON_MODEL_DIRECTORY"
ACTIVATE = "activate"  # up to r25.07: `source <env>/bin/activate && exec env LD_LIBRARY_PATH=... <stub>`
PARSED = "parsed"  # from r25.08: ParseActivationScript; bin/activate must exist but is not run
HOOKS = "etc/conda/activate.d/"  # conda's activation hooks, which only a sourced activate runs
