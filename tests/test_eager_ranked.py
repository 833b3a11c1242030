"""worker.eager_ranked: which outputs eager's own index ops made, and what they ranked."""

import torch

from difftest.worker.eager_ranked import IndexWatch


def _explain(fn, *inputs):
    watch = IndexWatch()
    with torch.inference_mode(), watch:
        outputs = fn(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return [watch.explain(o) for o in outputs]


def test_index_values_and_gathered_outputs_are_told_apart():
    scores, boxes = torch.tensor([0.9, 0.5, 0.9, 0.3]), torch.arange(16.0).reshape(4, 4)

    def model(s, b):
        top, index = s.topk(2)
        return top, index, b[index], (s > 0.4).sum()

    top, index, gathered, count = _explain(model, scores, boxes)
    assert top[0]["kind"] == "values" and top[0]["op"] == "TopK" and top[1] is None
    assert index[0] == {"op": "TopK", "axis": 0, "keepdims": True, "sorted": True, "kind": "index"}
    assert torch.equal(index[1], scores)  # eager's own values, not anybody's graph
    assert gathered[0]["kind"] == "gathered" and abs(gathered[0]["cut_score"] - 0.9) < 1e-6
    assert torch.equal(gathered[1], boxes[[0, 2]])  # the rows eager scored at the cut
    assert count is None  # an integer, but no index: the ties rules do not apply to it


def test_argmax_forms_are_recognised():
    x = torch.tensor([[1.0, 3.0, 3.0], [5.0, 5.0, 0.0]])
    keep, squeezed, flat, converted, max_dim, argsort = _explain(
        lambda t: (
            t.argmax(-1, keepdim=True),
            t.argmax(-1, keepdim=True).squeeze(-1),
            t.argmax(),
            t.argmax(-1).to(torch.int32),
            t.max(0).indices,
            t.argsort(-1, descending=True),
        ),
        x,
    )
    assert keep[0]["keepdims"] and keep[0]["axis"] == 1
    assert squeezed[0]["keepdims"] is False and squeezed[0]["kind"] == "index"
    assert flat[0]["keepdims"] is False and flat[1].shape == (6,)
    assert converted[0]["kind"] == "index"
    assert max_dim[0]["op"] == "ArgMax" and max_dim[0]["axis"] == 0
    assert argsort[0]["op"] == "Sort"


def test_unsorted_topk_says_so():
    (values, index) = _explain(lambda t: tuple(t.topk(3, sorted=False)), torch.rand(10))
    assert values[0]["sorted"] is False and index[0]["sorted"] is False
