"""Shared component decorator: the project image, no kfp install at runtime (the image has it)."""

from __future__ import annotations

from functools import partial

from kfp import dsl

from mlpipeline.config import project_image

#: Every component runs the one project image and imports the installed ``mlpipeline`` package,
#: so the same component runs under kfp.local (SubprocessRunner/DockerRunner) and on a cluster.
component = partial(dsl.component, base_image=project_image(), install_kfp_package=False)
