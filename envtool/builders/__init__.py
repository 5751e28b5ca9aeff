"""The builders: how a stub (store -> prebuilt -> local CMake -> docker) and an env (a Python, a conda env or
an env file, then conda-pack; locally or in docker) are made and checked. They sit above the parts they use
(stub/, env/, containers/) and below the commands (build, matrix, bake, api)."""
