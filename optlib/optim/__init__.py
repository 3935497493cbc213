"""The optimizers of the course, drop-in replacements for their torch.optim counterparts."""

from .sgd import SGD, GradientDescent
from .adagrad import Adagrad
from .rmsprop import RMSprop
from .adam import Adam
from .adamw import AdamW
from .nadam import NAdam
from .nesterov_adamw import NesterovAdamW

__all__ = ["SGD", "GradientDescent", "Adagrad", "RMSprop", "Adam", "AdamW", "NAdam", "NesterovAdamW"]
