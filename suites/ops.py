"""Operators, one case each, generated from tables: the ones known to differ between runtimes.

Each row is (name, function, inputs, options). The function gets the inputs positionally; a tiny module
wraps it so every exporter and runtime sees an ordinary nn.Module. Inputs are seeded; floating inputs
have float32 unless the row says otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from difftest import Case, case


class Op(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *inputs):
        return self.fn(*inputs)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, dtype=torch.float32):
    return torch.randn(*shape, generator=gen(seed)).to(dtype)


def randint(low, high, *shape, seed=0):
    return torch.randint(low, high, shape, generator=gen(seed))


def with_nans(*shape, seed=0):
    x = randn(*shape, seed=seed)
    x.view(-1)[::5] = float("nan")
    return x


ROWS: list[tuple[str, object, tuple, dict]] = []


def row(name, fn, inputs, why: str = "", **options):
    """One operator case; ``why`` explains a declared ``expect`` (what differs, and a link where one exists)."""
    ROWS.append(
        (
            name,
            fn,
            inputs,
            dict(options, description=f"torch operator case {name}." + (f" Known: {why}" if why else "")),
        )
    )


# --- interpolate: every mode, align_corners where it applies, scale and size ---------------------------
IMAGE = randn(1, 2, 5, 7, seed=1)
for mode in ("nearest", "nearest-exact", "bilinear", "bicubic", "area"):
    row(
        f"interpolate_{mode.replace('-', '_')}_scale2",
        lambda x, m=mode: F.interpolate(x, scale_factor=2, mode=m),
        (IMAGE,),
    )
    row(f"interpolate_{mode.replace('-', '_')}_size", lambda x, m=mode: F.interpolate(x, size=(8, 9), mode=m), (IMAGE,))
for mode in ("bilinear", "bicubic"):
    for align in (True, False):
        row(
            f"interpolate_{mode}_align{int(align)}_scale1_5",
            lambda x, m=mode, a=align: F.interpolate(x, scale_factor=1.5, mode=m, align_corners=a),
            (IMAGE,),
        )
for align in (True, False):
    row(
        f"interpolate_linear_align{int(align)}",
        lambda x, a=align: F.interpolate(x, size=11, mode="linear", align_corners=a),
        (randn(1, 3, 6, seed=2),),
    )
    row(
        f"interpolate_trilinear_align{int(align)}",
        lambda x, a=align: F.interpolate(x, scale_factor=2, mode="trilinear", align_corners=a),
        (randn(1, 1, 3, 4, 5, seed=3),),
    )
row(
    "interpolate_nearest_downscale",
    lambda x: F.interpolate(x, scale_factor=0.5, mode="nearest"),
    (randn(1, 2, 9, 9, seed=4),),
)

# --- pad: every mode -------------------------------------------------------------------------------------
PAD_WRAP = dict(
    expect={"openvino*": "runtime_error"},
    why="circular padding exports as ONNX Pad mode=wrap (opset 19), which OpenVINO's ONNX frontend "
    '(2026.4.1) cannot convert ("Unsupported padding mode: [wrap]"): a backend limitation, '
    "https://github.com/openvinotoolkit/openvino/issues/37772",
)
for mode in ("constant", "reflect", "replicate", "circular"):
    row(
        f"pad_{mode}_2d",
        lambda x, m=mode: F.pad(x, (1, 2, 2, 1), mode=m),
        (randn(1, 2, 4, 5, seed=5),),
        **(PAD_WRAP if mode == "circular" else {}),
    )
row("pad_constant_value", lambda x: F.pad(x, (2, 0, 0, 3), value=-1.5), (randn(2, 3, 4, seed=6),))
row("pad_negative_crop", lambda x: F.pad(x, (-1, 2)), (randn(2, 6, seed=7),))
row("pad_reflect_1d", lambda x: F.pad(x, (3, 3), mode="reflect"), (randn(1, 2, 6, seed=8),))

# --- rounding, integer division and remainder with negative operands ------------------------------------
HALVES = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.49, 0.51, 3.7, -3.7])
row("round_half_to_even", torch.round, (HALVES,))
row("floor", torch.floor, (HALVES,))
row("ceil", torch.ceil, (HALVES,))
row("trunc", torch.trunc, (HALVES,))
row("round_decimals", lambda x: torch.round(x, decimals=1), (randn(10, seed=9) * 10,))
NUMERATORS = torch.tensor([-7, -6, -5, -1, 0, 1, 5, 6, 7])
DENOMINATORS = torch.tensor([2, -2, 3, -3, 4, 2, -3, 5, -4])
row("int_floor_divide", lambda a, b: a // b, (NUMERATORS, DENOMINATORS))
row("int_div_trunc", lambda a, b: torch.div(a, b, rounding_mode="trunc"), (NUMERATORS, DENOMINATORS))
row("int_div_floor", lambda a, b: torch.div(a, b, rounding_mode="floor"), (NUMERATORS, DENOMINATORS))
row("int_remainder", torch.remainder, (NUMERATORS, DENOMINATORS))
row("int_fmod", torch.fmod, (NUMERATORS, DENOMINATORS))
row("float_floor_divide", lambda a, b: a // b, (NUMERATORS.float() + 0.5, DENOMINATORS.float()))
row("float_remainder", torch.remainder, (NUMERATORS.float() + 0.5, DENOMINATORS.float()))
row("float_fmod", torch.fmod, (NUMERATORS.float() + 0.5, DENOMINATORS.float()))
row("true_divide_int", lambda a, b: a / b, (NUMERATORS, DENOMINATORS))

# --- NaN through clamp, min, max ------------------------------------------------------------------------
OPENVINO_DROPS_NAN = {"openvino*": "nonfinite"}
OPENVINO_NAN_WHY = (
    "OpenVINO's CPU plugin (2026.4.1, at bf16 and at f32) returns a finite value where the input is "
    "NaN ({op}: {result}); torch, ONNX Runtime and onnx.reference propagate NaN, so blame names "
    "openvino (onnx-ref agrees with eager on the same graph). Relu: "
    "https://github.com/openvinotoolkit/openvino/issues/35649"
)
row(
    "clamp_nan",
    lambda x: torch.clamp(x, -0.5, 0.5),
    (with_nans(4, 5, seed=10),),
    expect=OPENVINO_DROPS_NAN,
    why=OPENVINO_NAN_WHY.format(op="Clip", result="the bound"),
)
row(
    "clamp_min_only_nan",
    lambda x: torch.clamp(x, min=0.0),
    (with_nans(4, 5, seed=11),),
    expect=OPENVINO_DROPS_NAN,
    why=OPENVINO_NAN_WHY.format(op="Clip with a lower bound only", result="the bound"),
)
row(
    "maximum_nan",
    torch.maximum,
    (with_nans(4, 5, seed=12), randn(4, 5, seed=13)),
    expect=OPENVINO_DROPS_NAN,
    why=OPENVINO_NAN_WHY.format(op="Max", result="the other operand"),
)
row("minimum_nan", torch.minimum, (randn(4, 5, seed=14), with_nans(4, 5, seed=15)))
row(
    "max_reduce_nan",
    lambda x: x.amax(dim=1),
    (with_nans(4, 5, seed=16),),
    expect={"ort-cpu*": "nonfinite", **OPENVINO_DROPS_NAN},
    why="ONNX Runtime's CPU ReduceMax does not always propagate NaN (a row with a NaN returns its finite maximum) "
    "where torch.amax does: https://github.com/microsoft/onnxruntime/issues/10514. Its CUDA provider "
    "propagates NaN (seen on an H200, onnxruntime-gpu 1.31.1), and so does onnx.reference: the CPU kernel "
    "is the odd one out. " + OPENVINO_NAN_WHY.format(op="ReduceMax", result="the row's finite maximum"),
)
row(
    "relu_nan",
    torch.relu,
    (with_nans(4, 5, seed=17),),
    expect=OPENVINO_DROPS_NAN,
    why=OPENVINO_NAN_WHY.format(op="Relu", result="0"),
)

# --- softmax over rows of -inf, log-softmax, reductions ---------------------------------------------------
NEG_INF_ROWS = torch.tensor([[0.0, 1.0, 2.0], [-math.inf, -math.inf, -math.inf], [-math.inf, 0.0, -math.inf]])
row("softmax_rows_of_neg_inf", lambda x: x.softmax(-1), (NEG_INF_ROWS,))
row("log_softmax_rows_of_neg_inf", lambda x: x.log_softmax(-1), (NEG_INF_ROWS,))
row("softmax_large_logits", lambda x: x.softmax(-1), (randn(4, 16, seed=18) * 1e3,))
row("logsumexp", lambda x: torch.logsumexp(x, dim=-1), (randn(4, 64, seed=19) * 30,))
row("cumsum_long_axis", lambda x: x.cumsum(-1), (randn(2, 16384, seed=20),))
row("cumsum_int64", lambda x: x.cumsum(0), (randint(-100, 100, 4096, seed=21),))
row(
    "cumprod",
    lambda x: x.cumprod(-1),
    (1 + 0.01 * randn(3, 200, seed=22),),
    expect={"*": "export_error"},
    why="torch 2.13's dynamo exporter decomposes cumprod into prims.prod, for which it has no ONNX function "
    "(DispatchError: No ONNX function found for prims.prod).",
)
row("sum_float16", lambda x: x.sum(-1), (randn(4, 2048, seed=23, dtype=torch.float16),))
row(
    "mean_large",
    lambda x: x.mean(),
    (randn(512, 512, seed=24) + 100,),
    why="on the tie-rich probe (262,144 values near 100) ONNX Runtime's CPU ReduceMean is off by ~1e-4 relative "
    "(0.0094 on 100.0008; eager's RMSE vs float64 is 2e-6): float32 sequential accumulation against "
    "eager's pairwise summation. That is within the summation bound γₙ·Σ|x| for n = 262,144, so it is "
    "numeric, and the evidence reports the accuracy lost (thousands of times farther from float64 than "
    "eager). ORT's CUDA provider (a tree reduction) is as accurate as eager.",
)
row("var_unbiased", lambda x: x.var(dim=-1), (randn(8, 100, seed=25) * 1e2 + 1e4,))

# --- normalisation and activations ------------------------------------------------------------------------
NORM_INPUT = randn(2, 8, 6, 6, seed=26) * 3 + 1
row("layer_norm", lambda x: F.layer_norm(x, (6, 6)), (NORM_INPUT,))
row("group_norm", lambda x: F.group_norm(x, 4), (NORM_INPUT,))
row("instance_norm", lambda x: F.instance_norm(x), (NORM_INPUT,))
row("batch_norm_eval", lambda x: F.batch_norm(x, torch.zeros(8), torch.ones(8) * 2, training=False), (NORM_INPUT,))
row("layer_norm_constant_rows", lambda x: F.layer_norm(x, (5,)), (torch.ones(3, 5) * 7,))
row("gelu_exact", lambda x: F.gelu(x), (randn(100, seed=27) * 4,))
row("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), (randn(100, seed=28) * 4,))
row("silu", F.silu, (randn(100, seed=29) * 6,))
row("hardswish", F.hardswish, (randn(100, seed=30) * 4,))
row("mish", F.mish, (randn(100, seed=31) * 4,))
row("softplus_threshold", lambda x: F.softplus(x, beta=2, threshold=5), (randn(100, seed=32) * 8,))
row("erf", torch.erf, (randn(100, seed=33) * 3,))
row("float16_gelu", lambda x: F.gelu(x), (randn(64, seed=34, dtype=torch.float16),))

# --- grid_sample -------------------------------------------------------------------------------------------
GRID_IMAGE = randn(1, 2, 5, 6, seed=35)
GRID = torch.rand(1, 4, 7, 2, generator=gen(36)) * 2.4 - 1.2  # reaches outside [-1, 1]
for mode in ("bilinear", "nearest", "bicubic"):
    for padding in ("zeros", "border", "reflection"):
        for align in (False, True):
            if mode != "bilinear" and align:
                continue
            row(
                f"grid_sample_{mode}_{padding}_align{int(align)}",
                lambda x, g, m=mode, p=padding, a=align: F.grid_sample(x, g, mode=m, padding_mode=p, align_corners=a),
                (GRID_IMAGE, GRID),
            )

# --- scatter / index_put with duplicate indices -------------------------------------------------------------
DUP_INDEX = torch.tensor([0, 2, 2, 4, 0, 1])
row("scatter_add_duplicates", lambda x, v: x.scatter_add(0, DUP_INDEX, v), (torch.zeros(5), randn(6, seed=37)))
row("index_add_duplicates", lambda x, v: x.index_add(0, DUP_INDEX, v), (torch.zeros(5, 3), randn(6, 3, seed=38)))
row(
    "index_put_accumulate",
    lambda x, v: x.index_put((DUP_INDEX,), v, accumulate=True),
    (torch.zeros(5), randn(6, seed=39)),
)
row(
    "scatter_duplicates_last_wins",
    lambda x, v: x.scatter(0, DUP_INDEX, v),
    (torch.zeros(5), randn(6, seed=40)),
    expect={"*cuda*": ["exact", "mismatch", "nondeterministic"]},
    why="with duplicate indices the write order decides the result: the ONNX specification (ScatterElements, "
    "reduction none) and torch.Tensor.scatter_ both leave it undefined. The CPU kernels write in index order "
    "(last wins); ORT's CUDA provider wrote another duplicate last on an H200. Any of these is legitimate "
    "on CUDA.",
)
row("index_put_unique", lambda x, v: x.index_put((torch.tensor([3, 1]),), v), (torch.zeros(5), randn(2, seed=41)))
row(
    "scatter_reduce_amax",
    lambda x, v: x.scatter_reduce(0, DUP_INDEX, v, reduce="amax"),
    (torch.zeros(5), randn(6, seed=42)),
)

# --- top-k, sort, argmax, unique, nonzero -------------------------------------------------------------------
TIED = torch.tensor([[3.0, 1.0, 3.0, 2.0, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
row("topk_distinct", lambda x: x.topk(3), (randn(4, 10, seed=43),))
row("topk_ties", lambda x: x.topk(3), (TIED,))
row("topk_smallest", lambda x: x.topk(2, largest=False), (randn(4, 10, seed=44),))
row("sort_descending", lambda x: x.sort(descending=True), (randn(3, 8, seed=45),))
row(
    "sort_stable_ties",
    lambda x: x.sort(stable=True),
    (TIED,),
    expect={"*": "export_error"},
    why="torch 2.13's dynamo exporter has no ONNX function for aten.sort.stable.",
)
row("argmax_ties", lambda x: x.argmax(-1), (TIED,))
row("argmin_keepdim", lambda x: x.argmin(0, keepdim=True), (randn(5, 4, seed=46),))
row("argmax_int64", lambda x: x.argmax(-1), (randint(0, 4, 3, 6, seed=47),))
row("unique_sorted", lambda x: torch.unique(x, sorted=True), (randint(0, 6, 20, seed=48),))
row("nonzero", torch.nonzero, (randint(0, 2, 4, 5, seed=49),))
row("masked_select_bool", lambda x, m: x[m], (randn(4, 5, seed=50), randint(0, 2, 4, 5, seed=51).bool()))

# --- einsum, matmul with broadcasting ----------------------------------------------------------------------
row("einsum_bmm", lambda a, b: torch.einsum("bij,bjk->bik", a, b), (randn(2, 3, 4, seed=52), randn(2, 4, 5, seed=53)))
row(
    "einsum_attention",
    lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k),
    (randn(1, 2, 5, 8, seed=54), randn(1, 2, 6, 8, seed=55)),
)
row("einsum_trace_outer", lambda a, b: torch.einsum("ii,j->j", a, b), (randn(4, 4, seed=56), randn(3, seed=57)))
row("matmul_broadcast", torch.matmul, (randn(2, 1, 3, 4, seed=58), randn(5, 4, 6, seed=59)))
row("matmul_vector", torch.matmul, (randn(3, 4, seed=60), randn(4, seed=61)))
row(
    "matmul_float16",
    torch.matmul,
    (randn(8, 64, seed=62, dtype=torch.float16), randn(64, 8, seed=63, dtype=torch.float16)),
)
row(
    "matmul_int64",
    torch.matmul,
    (randint(-5, 5, 3, 4, seed=64), randint(-5, 5, 4, 2, seed=65)),
    expect={"torch-cuda*": "runtime_error"},
    why='PyTorch has no int64 matmul kernel on CUDA (NotImplementedError: "addmm_cuda" not implemented for '
    "'Long'): a backend limitation, not a model error.",
)

# --- casts, including out of range -------------------------------------------------------------------------
OUT_OF_RANGE = torch.tensor([0.0, -1.5, 2.7, 3e9, -3e9, 1e20, 255.9, 256.0, -0.9])
UNDEFINED_CAST = {"*cuda*": ["exact", "mismatch"], "openvino*": ["exact", "mismatch"]}
UNDEFINED_WHY = (
    "converting a float that does not fit the integer type (or NaN, or Inf) is undefined behaviour in "
    "C++ and in the ONNX specification (Cast); x86 CPUs give the 'integer indefinite' value, CUDA "
    "saturates (seen on an H200: 2147483647 where the CPU gives -2147483648), and OpenVINO's CPU plugin "
    "converts some of them otherwise again (2026.4.1: float to int64). ONNX Runtime's CPU provider "
    "agrees with eager exactly; on CUDA and OpenVINO either is legitimate, and the verdict blames nobody."
)
row(
    "cast_float_to_int32_out_of_range",
    lambda x: x.to(torch.int32),
    (OUT_OF_RANGE,),
    expect=UNDEFINED_CAST,
    why=UNDEFINED_WHY,
)
row("cast_float_to_int64", lambda x: x.to(torch.int64), (OUT_OF_RANGE,), expect=UNDEFINED_CAST, why=UNDEFINED_WHY)
row(
    "cast_float_to_uint8_out_of_range",
    lambda x: x.to(torch.uint8),
    (OUT_OF_RANGE,),
    expect=UNDEFINED_CAST,
    why=UNDEFINED_WHY,
)
row(
    "cast_nan_to_int",
    lambda x: x.to(torch.int32),
    (torch.tensor([float("nan"), 1.0, float("inf")]),),
    expect=UNDEFINED_CAST,
    why=UNDEFINED_WHY,
)
row(
    "cast_float_to_bool",
    lambda x: x.to(torch.bool),
    (torch.tensor([0.0, -0.0, 1e-30, float("nan"), -2.0]),),
    expect={"openvino*": "mismatch"},
    why="OpenVINO's CPU plugin (2026.4.1) casts NaN to False; the ONNX specification (Cast: any non-zero value is "
    "True), torch, ONNX Runtime and onnx.reference give True, so blame names openvino.",
)
row("cast_int_to_float16_large", lambda x: x.to(torch.float16), (torch.tensor([70000, 2049, -65504, 1]),))
row("cast_float32_to_float16_overflow", lambda x: x.half(), (torch.tensor([1e5, -7e4, 65504.0, 1e-8]),))

# --- bool and comparisons ----------------------------------------------------------------------------------
row(
    "bool_logic",
    lambda a, b: (a & ~b) | (a ^ b),
    (randint(0, 2, 4, 5, seed=66).bool(), randint(0, 2, 4, 5, seed=67).bool()),
)
row(
    "where_bool",
    lambda c, x, y: torch.where(c, x, y),
    (randint(0, 2, 4, 5, seed=68).bool(), randn(4, 5, seed=69), randn(4, 5, seed=70)),
)
row("eq_float_nan", lambda x: x == x, (with_nans(3, 5, seed=71),))
row(
    "isnan_isinf",
    lambda x: (torch.isnan(x), torch.isinf(x)),
    (torch.tensor([1.0, float("nan"), float("inf"), -float("inf")]),),
)


def _factory(fn, inputs, options):
    def build():
        return Case(Op(fn).eval(), tuple(t.clone() for t in inputs), **options)

    return build


for _name, _fn, _inputs, _options in ROWS:
    _tags = ["op"] + list(_options.pop("tags", []))
    _description = _options.pop("description")
    _build = _factory(_fn, _inputs, _options)
    case(_build, name=_name, tags=_tags, description=_description, expect=_options.pop("expect", None))
