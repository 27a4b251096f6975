"""torch ``nn.Module`` sequence classifiers (installed as ``qlam_tn.models``).

Every model maps ``(B, T, F)`` tokens to ``(B, num_classes)`` logits and streams:
``state = model.init_state(B)``, ``logits, state = model.step(x_t, state)``.

    from qlam_tn.models import build, count_parameters
    model = build("qlam", input_dim=28, num_classes=10, n_qubits=8)
"""
from .common import count_parameters, match_hidden_size
from .qlam import QLAM, QLAMClassifier, QLAMConfig, QLAMState
from .registry import available, build, register, width_key
from .rnn import GRUClassifier, LSTMClassifier
from .ssm import SSMClassifier
from .transformer import TransformerClassifier

if "qlam" not in available():
    register("qlam", QLAMClassifier, width="head_hidden")

__all__ = [
    "build", "register", "available", "width_key", "count_parameters", "match_hidden_size",
    "QLAM", "QLAMClassifier", "QLAMConfig", "QLAMState",
    "LSTMClassifier", "GRUClassifier", "TransformerClassifier", "SSMClassifier",
]
