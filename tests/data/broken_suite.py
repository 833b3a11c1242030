import torch

from difftest import case

@case(
def oops():
    pass
