from kfp.dsl import Artifact, Input, Output
from mlpipeline.components._base import component


@component()
def gate_op(evaluation: Input[Artifact], gate: dict, registry: dict, decision: Output[Artifact]) -> bool:
    """Bless the candidate against config bounds and the registry's production model.

    Returns ``blessed`` as the task's single output: kfp 2.17's local orchestrator cannot resolve
    NamedTuple outputs inside ``dsl.If`` conditions, so the reason travels in the decision artifact.
    """
    from mlpipeline.stages.gate import gate as run_gate

    result = run_gate(evaluation.path, gate, registry, decision.path)
    decision.metadata.update({"blessed": result["blessed"], "reason": result["reason"]})
    print(result["reason"])
    return bool(result["blessed"])
