r"""The same single unit, trained by gradient descent on a sigmoid output.

    python -m experiments.train --config=experiments/configs/perceptron_sigmoid_and.py \
        --workdir=runs/perceptron_sigmoid_and

Binary cross-entropy on sigmoid(w.x + b), plain gradient descent on all four
points of AND; stops once all four are classified correctly.
"""

from experiments.configs import perceptron_and


def get_config():
    c = perceptron_and.get_config()
    c.name = "perceptron_sigmoid_and"
    c.model.zero_init = False
    c.task.name = "binary_classification"
    c.optimizer.learning_rate = 1.0
    c.batch_size = 4
    c.num_train_steps = 400
    return c
