import torch
import no_such_module_for_difftest  # noqa: F401
