"""Small models that must agree with eager PyTorch exactly or within floating-point noise."""

import torch

from difftest import Case, case


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))

    def forward(self, x):
        return self.net(x)


@case(tags=["basic"])
def mlp():
    """Two linear layers and a ReLU."""
    torch.manual_seed(0)
    return MLP().eval(), (torch.randn(8, 16),)


@case(tags=["basic"], exporter="torchscript")
def mlp_torchscript():
    """The same MLP through the TorchScript exporter."""
    torch.manual_seed(0)
    return MLP().eval(), (torch.randn(8, 16),)


class ConvBnRelu(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1)


@case(tags=["basic", "conv"])
def conv_bn_relu():
    """Conv, batch norm (folded by the exporter), ReLU, global pooling."""
    torch.manual_seed(0)
    model = ConvBnRelu().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model, (torch.randn(2, 3, 16, 16),)


class IntegerOps(torch.nn.Module):
    def forward(self, a, b):
        return a * 3 + b, torch.where(a > b, a, b), (a - b).abs()


@case(tags=["basic", "int"])
def integer_arithmetic():
    """int64 arithmetic: must be bit-identical."""
    g = torch.Generator().manual_seed(0)
    return IntegerOps().eval(), (
        torch.randint(-50, 50, (4, 5), generator=g),
        torch.randint(-50, 50, (4, 5), generator=g),
    )


class Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(32, 4, batch_first=True)
        self.norm = torch.nn.LayerNorm(32)

    def forward(self, x):
        out, _ = self.attn(x, x, x, need_weights=False)
        return self.norm(x + out)


@case(tags=["basic", "attention"])
def attention_block():
    """Multi-head self-attention with a residual and LayerNorm."""
    torch.manual_seed(0)
    return Attention().eval(), (torch.randn(2, 10, 32),)


class Heads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(8, 8)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return {"logits": h @ h.T, "probs": h.softmax(-1)}


@case(tags=["basic"])
def dict_outputs():
    """A model returning a dict: outputs are matched by name, not only by position."""
    torch.manual_seed(0)
    return Heads().eval(), (torch.randn(5, 8),)


@case(tags=["basic", "dynamic"])
def dynamic_batch():
    """A dynamic batch axis declared for export."""
    torch.manual_seed(0)
    return Case(MLP().eval(), (torch.randn(3, 16),), dynamic_axes={"x": {0: "batch"}})
