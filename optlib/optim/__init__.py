"""The optimizers of the course, drop-in replacements for their torch.optim counterparts."""

from .adagrad import Adagrad
from .adam import Adam
from .adamw import AdamW
from .nadam import NAdam
from .nesterov_adamw import NesterovAdamW
from .rmsprop import RMSprop
from .sgd import SGD, GradientDescent

__all__ = ["SGD", "GradientDescent", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam", "NesterovAdamW"]
