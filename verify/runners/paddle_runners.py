"""Paddle Inference (the deployment predictor) and paddle.jit.load (training engine + inference model)."""
from __future__ import annotations

import numpy as np

from converter.core.errors import one_line
from converter.core.outputs import named_outputs

from .base import Availability, DeviceUnavailable, Feeds, LoadRequest, Runner, RunnerError

PARAMS_SUFFIX = ".pdiparams"  # beside the model file (model.json or model.pdmodel)

GPU_MEMORY_POOL_MB = 256


def _unavailable(device: str, availability: Availability) -> str | None:
    if device in ("cuda", "tensorrt") and not availability.paddle_cuda:
        return "paddle: CPU-only build or no GPU visible (install paddlepaddle-gpu)"
    if device == "tensorrt" and not availability.paddle_tensorrt:
        return "paddle: built without TensorRT"
    return None


class PaddleInferenceRunner(Runner):
    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        return _unavailable(device, availability)

    precision = "fp32"
    onednn_fallback: str | None = None  # why oneDNN was turned off for this model

    def load(self, request: LoadRequest) -> None:
        self.request = request
        try:
            self._create_predictor(onednn=True)
        except Exception as exc:  # its IR passes run the model's shapes through oneDNN's kernels already (see run)
            if request.device != "cpu":
                raise
            self._without_onednn(exc, lambda: None)

    def _create_predictor(self, onednn: bool) -> None:
        import paddle.inference as paddle_infer

        request = self.request
        config = paddle_infer.Config(str(request.path), str(request.path.with_suffix(PARAMS_SUFFIX)))
        config.switch_ir_optim(True)
        config.disable_glog_info()
        if request.device == "cpu":
            # Paddle's documented CPU setup: oneDNN + IR optimisation, threads = physical cores.
            # Without oneDNN, ResNet-style models run 2-4x slower.
            config.disable_gpu()
            if onednn:
                config.enable_mkldnn()
                if self.precision == "bf16":
                    config.enable_mkldnn_bfloat16()
            else:
                config.disable_mkldnn()
            config.set_cpu_math_library_num_threads(request.threads)
        else:
            config.enable_use_gpu(GPU_MEMORY_POOL_MB, 0)
            if request.device == "tensorrt":
                config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=64, min_subgraph_size=3,
                                              precision_mode=paddle_infer.PrecisionType.Float32,
                                              use_static=False, use_calib_mode=False)
        self.config = config
        self.device, self.threads = request.device, request.threads
        self.predictor = paddle_infer.create_predictor(config)
        # x2paddle names inputs and outputs its own way (x0, ...): they are taken in the declared order.
        self.inputs = [self.predictor.get_input_handle(name) for name in self.predictor.get_input_names()]

    def run(self, feeds: Feeds) -> Feeds:
        try:
            return self._predict(feeds)
        except Exception as exc:
            # Paddle 3.3's oneDNN kernels cannot run some models x2paddle writes: bilinear interpolate
            # ("ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<DoubleAttribute>",
            # PaddlePaddle/Paddle#79749), and the fused matmul of swin_t and vit_b_16 built by the ONNX route ("input's
            # second dimension is 301056" against a 96-wide weight). Plain CPU kernels run them; the fallback and
            # the error that caused it are in the effective configuration.
            if self.device != "cpu" or not self.config.mkldnn_enabled():
                raise
            return self._without_onednn(exc, lambda: self._predict(feeds))

    def _without_onednn(self, exc: Exception, then):
        """The predictor again on plain CPU kernels, then `then()`; the oneDNN error is recorded. If that fails
        too, it was not oneDNN's fault: the first error is the one to read. Only in fp32: plain kernels would run a
        bf16 cell in fp32."""
        error = one_line(exc, plain=True)[:200]
        if self.precision != "fp32":
            raise RunnerError(f"Paddle's oneDNN kernels failed, and only they run bf16: {error}") from None
        self.onednn_fallback = error
        try:
            self._create_predictor(onednn=False)
            return then()
        except Exception:
            raise exc from None

    def _predict(self, feeds: Feeds) -> Feeds:
        for handle, name in zip(self.inputs, self.request.inputs):
            handle.reshape(list(feeds[name].shape))
            handle.copy_from_cpu(np.ascontiguousarray(feeds[name]))
        self.predictor.run()
        outputs = [self.predictor.get_output_handle(name).copy_to_cpu() for name in self.predictor.get_output_names()]
        return named_outputs(outputs, self.request.outputs)

    def describe(self) -> dict:
        import paddle

        return {"version": paddle.__version__, "device": self.device, "precision": self.precision,
                "onednn": bool(self.config.mkldnn_enabled()), "ir_optim": bool(self.config.ir_optim()),
                "threads": self.threads if self.device == "cpu" else None,
                "tensorrt": bool(self.config.tensorrt_engine_enabled()),
                **({"onednn_fallback": self.onednn_fallback} if self.onednn_fallback else {})}


class PaddleInferenceBf16Runner(PaddleInferenceRunner):
    """Paddle Inference on the CPU with oneDNN's bfloat16 kernels (`enable_mkldnn_bfloat16`): the ops oneDNN has
    in bf16 (convolutions, fully connected, pooling, activations) run in bf16, the rest in fp32. Paddle turns the
    setting off without a word on a CPU without AVX-512 (and its Config cannot say whether it did), and its kernels
    crash on an AVX-512 CPU without bf16 instructions (std::exception): the cell runs only on a CPU with them, and
    is skipped with the reason elsewhere."""

    precision = "bf16"

    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        cpu = availability.cpu
        if device == "cpu" and cpu.known and not cpu.bf16:
            return (f"Paddle's oneDNN bf16 kernels need bf16 instructions (avx512_bf16 or amx_bf16); this CPU "
                    f"({cpu.model}) has none")
        return super().unavailable(device, availability)

    def load(self, request: LoadRequest) -> None:
        from paddle.base import core

        if not core.supports_bfloat16_fast_performance():  # Paddle's own word: AVX-512 BF16 (else emulated/crash)
            raise DeviceUnavailable("Paddle says this CPU has no bf16 instructions "
                                    "(paddle.base.core.supports_bfloat16_fast_performance() is False)")
        super().load(request)

    def describe(self) -> dict:
        return {**super().describe(), "onednn_bfloat16": True}


class PaddleJitRunner(Runner):
    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        return _unavailable(device, availability)

    def load(self, request: LoadRequest) -> None:
        import paddle

        paddle.set_device("gpu" if request.device == "cuda" else "cpu")
        if request.device == "cpu":
            paddle.base.core.set_num_threads(request.threads)  # the math library's threads (1211 -> 959 ms, b8)
        self.request, self.device, self.threads = request, request.device, request.threads
        self.layer = paddle.jit.load(str(request.path.with_suffix("")))
        self.layer.eval()

    def run(self, feeds: Feeds) -> Feeds:
        import paddle

        with paddle.no_grad():
            out = self.layer(*[paddle.to_tensor(feeds[name]) for name in self.request.inputs])
        return named_outputs(out, self.request.outputs)

    def describe(self) -> dict:
        import paddle

        # paddle.jit.load runs the program op by op through the training executor: none of Paddle Inference's
        # IR passes (conv+bn fusion) and no oneDNN (FLAGS_use_mkldnn fails in run_program with
        # "dst_tensor shall be defined" on Paddle 3.3), hence several times slower than paddle-inference.
        return {"version": paddle.__version__, "device": self.device, "api": "paddle.jit.load", "precision": "fp32",
                "threads": self.threads if self.device == "cpu" else None, "onednn": False, "ir_optim": False}


class PaddleDygraphRunner(Runner):
    """The training engine on the persistable (dygraph) model: x2paddle's generated Layer with its weights, run op
    by op in eager mode, as a Paddle training or fine-tuning script would."""

    @classmethod
    def unavailable(cls, device: str, availability: Availability) -> str | None:
        return _unavailable(device, availability)

    def load(self, request: LoadRequest) -> None:
        import paddle

        from converter.core.paddle_dygraph import load_dygraph

        self.layer = load_dygraph(request.path, threads=request.threads if request.device == "cpu" else 0)
        if request.device == "cuda":
            paddle.set_device("gpu")
            self.layer.to(device="gpu")
        self.request, self.device, self.threads = request, request.device, request.threads

    def run(self, feeds: Feeds) -> Feeds:
        import paddle

        with paddle.no_grad():
            out = self.layer(*[paddle.to_tensor(feeds[name]) for name in self.request.inputs])
        return named_outputs(out, self.request.outputs)

    def describe(self) -> dict:
        import paddle

        return {"version": paddle.__version__, "device": self.device,
                "api": "dygraph (x2paddle_code.py + model.pdparams)",
                "layer": type(self.layer).__name__, "precision": "fp32",
                "threads": self.threads if self.device == "cpu" else None, "onednn": False, "ir_optim": False}
