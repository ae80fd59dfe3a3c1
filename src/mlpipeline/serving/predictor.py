"""The KServe predictor for a packaged model directory (see :mod:`mlpipeline.packaging`).

A small ``kserve.Model`` subclass: :meth:`load` verifies the sha256 manifest and unpickles the
model (and refuses a tampered or incomplete directory); :meth:`predict` decodes v1 or v2 requests
into raw input rows (:mod:`mlpipeline.serving.codec`), scores them with the very same
:meth:`PackagedModel.predict_frame` that ``mlpipeline predict`` uses, and encodes the answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kserve
from kserve import InferRequest, InferResponse

from mlpipeline.packaging import PackagedModel
from mlpipeline.serving import codec
from mlpipeline.serving.server import DEFAULT_MAX_BATCH_ROWS
from mlpipeline.serving.telemetry import record_predictions

#: batches up to this many rows are scored on the event loop (a few ms); larger ones in a thread
INLINE_MAX_ROWS = 64


class TabularModel(kserve.Model):
    def __init__(self, name: str, model_dir: str, *, max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS):
        super().__init__(name)
        self.model_dir = model_dir
        self.max_batch_rows = max_batch_rows
        self.packaged: PackagedModel | None = None

    def load(self) -> bool:
        """Verify MANIFEST.json, then unpickle. Raises IntegrityError/ArtifactError; never half-ready."""
        self.packaged = PackagedModel.load(self.model_dir)
        self.ready = True
        return self.ready

    @property
    def version(self) -> str:
        return self._model().version

    def _model(self) -> PackagedModel:
        if self.packaged is None:
            raise kserve.errors.ModelNotReady(self.name)
        return self.packaged

    def get_input_types(self) -> list[dict[str, Any]]:
        return codec.input_metadata(self._model().signature)

    def get_output_types(self) -> list[dict[str, Any]]:
        return codec.output_metadata(self._model().signature)

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        model = self._model()
        sig = model.signature
        if isinstance(payload, InferRequest):
            frame = codec.frame_from_v2(payload, sig, self.max_batch_rows)
        else:
            frame = codec.frame_from_v1(payload, sig, self.max_batch_rows)
        # Scoring is CPU-bound. Small batches (milliseconds) run inline: a thread hop costs more than
        # it frees. Large ones go to the executor so health probes and /metrics stay responsive.
        if len(frame) <= INLINE_MAX_ROWS:
            pred = model.predict_frame(frame)
        else:
            pred = await asyncio.get_running_loop().run_in_executor(None, model.predict_frame, frame)
        record_predictions(self.name, sig, pred)
        if isinstance(payload, InferRequest):
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                model_version=model.version,
                infer_outputs=codec.v2_outputs(pred, sig),
                use_binary_outputs=payload.use_binary_outputs,
                requested_outputs=payload.request_outputs,
            )
        return codec.v1_response(pred, sig)
