"""The runnable PyTorch file: Python source that rebuilds a network as a plain `nn.Sequential`.

The source is written from the built model's own modules (not re-derived from the spec), so
it cannot drift from what LayerLab trains: each block becomes one `nn.Sequential(...)` line
with the spec layer's description and output shape as a comment, and the two modules of
ours (input normalisation, L2 pooling) are written out inline. The state-dict keys of the
generated network equal LayerLab's ("1.0.weight" …), so the exported weights load strictly.

The file needs only `torch` and Pillow: its weights are a `torch.save` state dict beside it,
read with `weights_only=True`. `python net.py digit.png …` prints one line per file ending
with the predicted digit; a 28×28 grey image is used as it is, any other size is resized.
"""

from __future__ import annotations

import inspect

from torch import nn

from core.model import network as networks
from core.model.vocabulary import shape_text

# Our two modules, written into the file as LayerLab defines them (their own source, so the copy cannot drift).
NORMALIZE_SOURCE = inspect.getsource(networks.Normalize)
L2POOL_SOURCE = inspect.getsource(networks.L2Pool2d)

MAIN_SOURCE = '''

def load(weights: Path = WEIGHTS) -> nn.Sequential:
    """The network with its trained weights, in evaluation mode (dropout off, batch-norm on its running averages)."""
    model = network()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def image_tensor(path: str) -> torch.Tensor:
    """A (1, 1, 28, 28) tensor in [0, 1] from an image file: grey, resized to 28×28 unless it is already that size.

    Like MNIST, the digit should be light on a dark background.
    """
    image = Image.open(path).convert("L")
    if image.size != (28, 28):
        image = image.resize((28, 28), Image.Resampling.BILINEAR)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.reshape(1, 1, 28, 28).float() / 255


def main(paths: list[str]) -> None:
    model = load()
    with torch.no_grad():
        for path in paths:
            probabilities = model(image_tensor(path)).softmax(dim=1)[0]
            digit = int(probabilities.argmax())
            print(f"{path}: {probabilities[digit]:.1%} sure it is {digit}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: python {Path(__file__).name} IMAGE.png [IMAGE.png ...]")
    main(sys.argv[1:])
'''


class SourceError(ValueError):
    """A module the generator does not know how to write (a bug in LayerLab, never the learner's input)."""


def _number(value: float) -> str:
    return repr(float(value))


def module_source(module: nn.Module) -> str:
    """One module as the Python expression that builds it with the same hyperparameters."""
    if isinstance(module, networks.Normalize):
        return f"Normalize(mean={_number(module.mean)}, std={_number(module.std)})"
    if isinstance(module, networks.L2Pool2d):
        return f"L2Pool2d(size={module.size}, stride={module.stride})"
    if isinstance(module, nn.Conv2d):
        return (
            f"nn.Conv2d({module.in_channels}, {module.out_channels}, kernel_size={module.kernel_size[0]}, "
            f"stride={module.stride[0]}, padding={module.padding[0]})"
        )
    if isinstance(module, nn.Linear):
        return f"nn.Linear({module.in_features}, {module.out_features})"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return f"nn.{type(module).__name__}(kernel_size={module.kernel_size}, stride={module.stride})"
    if isinstance(module, nn.Dropout):
        return f"nn.Dropout(p={module.p})"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return f"nn.{type(module).__name__}({module.num_features}, eps={module.eps}, momentum={module.momentum})"
    if isinstance(module, nn.LeakyReLU):
        return f"nn.LeakyReLU(negative_slope={module.negative_slope})"
    if isinstance(module, nn.ELU):
        return f"nn.ELU(alpha={module.alpha})"
    if isinstance(module, nn.GELU):
        return f"nn.GELU(approximate={module.approximate!r})"
    if isinstance(module, (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity, nn.Flatten)):
        return f"nn.{type(module).__name__}()"
    raise SourceError(f"no source for {type(module).__name__}")


def _safe_title(title: str) -> str:
    """The title as docstring text: one line, no quotes or backslashes, so a run's name cannot end the docstring and add code."""
    kept = "".join(character if character.isprintable() else " " for character in title)
    return " ".join(kept.replace("\\", "/").replace('"', "'").split())[:200] or "A LayerLab network"


def python_source(spec: dict, dataset: str, stem: str, title: str) -> str:
    """The file `<stem>.py` for the network `spec` (validated here), whose weights lie beside it in `<stem>.pt`."""
    summary = networks.validate(spec, dataset)
    model = networks.build(summary, dataset)
    uses_l2pool = any(isinstance(module, networks.L2Pool2d) for module in model.modules())
    lines = [
        f'"""{_safe_title(title)}',
        "",
        "Written by LayerLab. It needs only PyTorch and Pillow:",
        f"    python {stem}.py digit.png [more.png ...]",
        "prints, for each image, the digit the network sees in it. Or import it:",
        "    model = load(); logits = model(images)  # images: (N, 1, 28, 28) in [0, 1]",
        '"""',
        "",
        "import sys",
        "from pathlib import Path",
        "",
        "import torch",
        "from PIL import Image",
        "from torch import nn",
        "",
        f"WEIGHTS = Path(__file__).with_name({stem + '.pt'!r})",
        "",
        "",
        NORMALIZE_SOURCE.rstrip(),
        "",
    ]
    if uses_l2pool:
        lines += ["", L2POOL_SOURCE.rstrip(), ""]
    lines += [
        "",
        "def network() -> nn.Sequential:",
        f'    """{len(summary.rows)} layers, {summary.total_parameters:,} parameters; images (N, 1, 28, 28) in, logits (N, 10) out."""',
        "    return nn.Sequential(",
        f"        {module_source(model[0])},  # input {shape_text(summary.input_shape)}",
    ]
    for row, block in zip(summary.rows, list(model)[1:]):
        inner = ", ".join(module_source(module) for module in block)
        lines.append(f"        # {row.index + 1}. {row.description} → {shape_text(row.output_shape)}, {row.parameters:,} parameters")
        lines.append(f"        nn.Sequential({inner}),")
    lines.append("    )")
    return "\n".join(lines) + "\n" + MAIN_SOURCE
