"""The dygraph model x2paddle generates (x2paddle_code.py beside model.pdparams), loaded into Paddle's training
engine. The code is executed: callers load it only from an artifact folder whose files the manifest's sha256
vouches for, never from a path a user names."""
from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

PARAMS_FILE = "model.pdparams"
CODE_FILE = "x2paddle_code.py"  # x2paddle's generated program, beside its weights
# x2paddle's generated main(): "model = ResNet()" names the top-level Layer
TOP_LAYER = re.compile(r"^\s*model = (\w+)\(\)", re.MULTILINE)


class NotX2PaddleCode(ValueError):
    """The file is not x2paddle's generated code (no main() building a Layer)."""


def load_dygraph(code_file: Path, threads: int = 0):
    """The generated Layer with its weights, in eval mode, on the CPU; `threads` for the math library (0: as is)."""
    import paddle

    source = code_file.read_text()
    found = TOP_LAYER.search(source)
    if found is None:
        raise NotX2PaddleCode(f"{code_file}: no 'model = <Layer>()' line: not x2paddle's generated code")
    # one module name per code file's content: two models' generated classes never collide in sys.modules
    name = f"x2paddle_code_{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    module = sys.modules.get(name)
    if module is None:
        spec = importlib.util.spec_from_file_location(name, code_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    paddle.set_device("cpu")
    if threads:
        paddle.base.core.set_num_threads(threads)
    layer = getattr(module, found.group(1))()
    layer.set_dict(paddle.load(str(code_file.with_name(PARAMS_FILE))), use_structured_name=True)
    layer.eval()
    return layer
