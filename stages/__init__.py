"""One module per DVC stage (`dvc.yaml` runs `python -m stages.<name>`).

The package checks its interpreter before any stage imports: a stage command that DVC runs under a
`python` without the project's dependencies stops with one line saying to activate the virtualenv.
"""

from pipeline.environment import require_project_interpreter

require_project_interpreter()
