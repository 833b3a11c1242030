"""Cases that misbehave on purpose: fault injection for the worker pool."""

import os
import signal
import time

import torch

from difftest import case


class SegfaultWhileTracing(torch.nn.Module):
    def forward(self, x):
        if torch.jit.is_tracing():
            os.kill(os.getpid(), signal.SIGSEGV)
        return x + 1


class SegfaultOnSecondCall(torch.nn.Module):
    calls = 0

    def forward(self, x):
        if not torch.jit.is_tracing():
            type(self).calls += 1
            if type(self).calls == 2:
                os.kill(os.getpid(), signal.SIGSEGV)
        return x + 1


class Sleeper(torch.nn.Module):
    def forward(self, x):
        if not torch.jit.is_tracing():
            time.sleep(120)
        return x + 1


class Hog(torch.nn.Module):
    def forward(self, x):
        # 1 GiB of address space a step, never touched: the --memory-limit stops it within a few steps and
        # microseconds, however busy the machine (writing the pages, as torch.ones did, could outlast the timeout).
        hoard = []
        while True:
            hoard.append(torch.empty(1 << 30, dtype=torch.uint8))


class Fine(torch.nn.Module):
    def forward(self, x):
        return x * 2


@case(exporter="torchscript")
def segfault_in_export():
    """Kills its own process with SIGSEGV while the exporter traces it."""
    return SegfaultWhileTracing().eval(), (torch.ones(3),)


@case(exporter="torchscript")
def segfault_in_run():
    """Kills its own process with SIGSEGV on its second eager call (the reference run)."""
    SegfaultOnSecondCall.calls = 0
    return SegfaultOnSecondCall().eval(), (torch.ones(3),)


@case(exporter="torchscript")
def sleeps_past_timeout():
    """Sleeps two minutes in eager mode."""
    return Sleeper().eval(), (torch.ones(3),)


@case(exporter="torchscript")
def allocates_without_bound():
    """Allocates 1 GiB tensors until something stops it."""
    return Hog().eval(), (torch.ones(3),)


@case(exporter="torchscript", name="html_<script>alert(1)</script>")
def html_name():
    """A case whose name is hostile HTML."""
    return Fine().eval(), (torch.ones(3),)


@case(exporter="torchscript")
def still_fine():
    """An ordinary case that must be unaffected by its neighbours."""
    return Fine().eval(), (torch.ones(3),)
