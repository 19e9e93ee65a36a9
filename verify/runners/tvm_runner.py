"""TVM: a library compiled for this CPU (see converter.core.tvm_cpu), run by the Relax virtual machine."""
from __future__ import annotations

import json
import os

from converter.core.outputs import named_outputs
from converter.core.tvm_cpu import BUILD_FILE

from .base import Availability, Feeds, LoadRequest, Runner, RunnerError


class TvmRunner(Runner):
    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        return None if availability.tvm_cpu else "tvm is not installed (pip install '.[tvm]': apache-tvm)"

    def load(self, request: LoadRequest) -> None:
        # the runtime's thread pool reads this when it starts, on the first call
        os.environ["TVM_NUM_THREADS"] = str(request.threads)
        from converter.core.tvm_cpu import host_target, load_vm

        build_file = request.path.with_name(BUILD_FILE)
        self.build = json.loads(build_file.read_text()) if build_file.is_file() else {}
        built_for, here = self.build.get("target", {}).get("mcpu"), host_target()["mcpu"]
        if built_for and built_for != here:  # another CPU's instructions may not exist on this one
            raise RunnerError(f"the library was compiled for -mcpu={built_for}, this CPU is {here}: "
                              f"convert it again here")
        self.vm = load_vm(request.path)
        self.request, self.threads = request, request.threads

    def run(self, feeds: Feeds) -> Feeds:
        from converter.core.tvm_cpu import run_vm

        return named_outputs(run_vm(self.vm, [feeds[name] for name in self.request.inputs]), self.request.outputs)

    def describe(self) -> dict:
        import tvm

        target = self.build.get("target", {})
        return {"version": tvm.__version__, "device": "cpu", "precision": "fp32",
                "target": f"{target.get('kind', 'llvm')} -mcpu={target.get('mcpu', '?')}",
                "tuned": bool(self.build.get("tuned", False)), "build_seconds": self.build.get("build_seconds"),
                "threads": self.threads}
