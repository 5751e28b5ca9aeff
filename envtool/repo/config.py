"""config.pbtxt <-> tritonclient's ModelConfig, with errors reported as path:line:col."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from envtool.errors import BadInput

ModelConfig = model_config_pb2.ModelConfig
DataType = model_config_pb2.DataType


class ConfigSyntaxError(BadInput):
    """config.pbtxt does not parse as a ModelConfig; `where` is path:line:col."""


def parse_config(text: str, path: str | Path = "<config.pbtxt>") -> ModelConfig:
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        line, col = e.GetLine() or 1, e.GetColumn() or 1
        message = str(e).split(" : ", 1)[-1]
        raise ConfigSyntaxError(message, "correct the field against Triton's model_config.proto",
                                where=f"{path}:{line}:{col}") from None
    return config


def load_config(path: Path) -> ModelConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path}: {e}") from None
    return parse_config(text, path)


def dtype_name(value: int) -> str:
    return DataType.Name(value)


def dims_str(dims) -> str:
    """As Triton prints a dims list (common DimsListToString)."""
    return "[" + ",".join(str(d) for d in dims) + "]"
