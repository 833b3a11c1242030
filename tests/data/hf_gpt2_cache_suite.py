"""One tiny Hugging Face GPT-2 decoding step for tests/test_transformers.py: a DynamicCache passed in as ``cache=``
and, with use_cache left at its default (True), the grown cache returned beside the logits."""

import torch

from difftest import case, importorskip

PAST, NEW = 4, 2


@case(tags=["transformers"], probes=["base", "alt", "shape"],
      dynamic_axes={"input_ids": {0: "batch", 1: "new"}, "attention_mask": {0: "batch", 1: "total"},
                    **{f"cache_layers_{i}_{kv}": {0: "batch", 2: "past"} for i in range(2) for kv in ("keys", "values")}})
def gpt2_decode_step():
    """model(input_ids, attention_mask=..., cache=<DynamicCache of a 4-token prefix>) on random weights."""
    importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        cache = model(torch.randint(0, 50, (1, PAST), generator=g)).cache
    ids = torch.randint(0, 50, (1, NEW), generator=g)
    return model, (ids,), {"attention_mask": torch.ones(1, PAST + NEW, dtype=torch.long), "cache": cache}
