"""Training and tuning at scale on existing cluster engines.

- :mod:`~mlpipeline.distributed.ddp`: the DDP training entry point for the torch MLP family
  (``torchrun -m mlpipeline.distributed.ddp ...``), gloo on CPU, nccl on GPU.
- :mod:`~mlpipeline.distributed.jobs`: Kubeflow Trainer ``TrainJob`` and Training Operator
  ``PyTorchJob`` objects that run it.
- :mod:`~mlpipeline.distributed.launcher`: stage inputs on a shared volume, create the job with the
  kubernetes client, poll it to Succeeded/Failed with a timeout, collect the model.
- :mod:`~mlpipeline.distributed.katib`: a Katib ``Experiment`` per model family from the same
  ``SEARCH_SPACE`` as the local Optuna tuner; trials run :mod:`~mlpipeline.distributed.katib_trial`.
"""
