"""Static checks of terraform/: format, wiring against the code, IAM hygiene, checkov.

Terraform cannot reach its registry here, so init/validate/plan run only through
`make tf-validate` on a user's machine; everything that needs no provider runs here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from completer.settings import _ENV_NAMES

ROOT = Path(__file__).resolve().parent.parent
TERRAFORM = ROOT / "terraform"
MODULES = {p.name: p for p in sorted((TERRAFORM / "modules").iterdir()) if p.is_dir()}
EXAMPLES = {p.name: p for p in sorted((TERRAFORM / "examples").iterdir()) if p.is_dir()}
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)

# Settings completer.settings reads (its aliases), plus the variables libraries read:
# temporalio.envconfig (Temporal's documented environment configuration) and boto3's
# standard AWS variables. Anything else set on a function is a typo or a dead setting.
LIBRARY_SETTINGS = {
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_DATA",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_DATA",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SFN",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
}
KNOWN_SETTINGS = set(_ENV_NAMES.values()) | LIBRARY_SETTINGS
SECRET_ARN_SUFFIX = "_SECRET_ARN"  # completer.secrets' variable-name suffix

# Where each module's function resources' code lives (functions/<directory>).
FUNCTION_RESOURCES = {
    ("gcp-functions", "google_cloudfunctions2_function", "http"): "http",
    ("gcp-functions", "google_cloudfunctions2_function", "pubsub"): "pubsub",
    ("gcp-functions", "google_cloudfunctions2_function", "gcs"): "gcs",
    ("aws-s3-lambda", "aws_lambda_function", "this"): "s3",
    ("aws-http-lambda", "aws_lambda_function", "this"): "http_lambda",
}
# IAM actions without resource-level permissions for callback task tokens: AWS accepts only
# "*" for them (scoped per deployment by var.state_machine_task_resources).
UNSCOPABLE_ACTIONS = {
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
}
PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}
# What the ledger's store does with its records: conditional put, read, update, delete.
LEDGER_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
}


def load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        parsed: dict[str, Any] = hcl2.load(handle, serialization_options=OPTIONS)
        return parsed


def blocks(directory: Path, kind: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(type, name, body) of every `kind` block (resource, data) in a directory."""
    for path in sorted(directory.glob("*.tf")):
        for entry in load(path).get(kind, []):
            for type_, named in entry.items():
                for name, body in named.items():
                    yield type_, name, body


def merged(directory: Path, kind: str) -> dict[str, Any]:
    """All `variable` or `locals` entries of a directory, by name."""
    result: dict[str, Any] = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in load(path).get(kind, []):
            result.update(entry)
    return result


def names_in(expression: object, local_values: dict[str, Any], seen: set[str]) -> set[str]:
    """Upper-case keys (NAME = ...) an expression sets, following local.<x> references."""
    if isinstance(expression, dict):
        found = {k for k in expression if re.fullmatch(r"[A-Z][A-Z0-9_]+", k)}
        for value in expression.values():
            found |= names_in(value, local_values, seen)
        return found
    if isinstance(expression, list):
        return set().union(*(names_in(v, local_values, seen) for v in expression))
    if not isinstance(expression, str):
        return set()
    found = set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})\s*=", expression))
    if "_SECRET_ARN" in expression:
        found.add("<NAME>_SECRET_ARN")
    for local in re.findall(r"local\.(\w+)", expression):
        if local not in seen and local in local_values:
            seen.add(local)
            found |= names_in(local_values[local], local_values, seen)
    return found


def function_environment(module: Path) -> dict[tuple[str, str, str], set[str]]:
    """Environment variable names each function resource of a module sets literally."""
    local_values = merged(module, "locals")
    result = {}
    for type_, name, body in blocks(module, "resource"):
        if (module.name, type_, name) not in FUNCTION_RESOURCES:
            continue
        if type_ == "aws_lambda_function":
            expression = body["environment"][0]["variables"]
        else:
            expression = body["service_config"][0]["environment_variables"]
        result[(module.name, type_, name)] = names_in(expression, local_values, set())
    return result


def example_settings(example: Path) -> set[str]:
    """Setting names an example passes to its module: env maps, secret maps, tfvars keys."""
    names: set[str] = set()
    for _, body in (
        (n, b) for entry in load(example / "main.tf").get("module", []) for n, b in entry.items()
    ):
        names |= names_in(body.get("environment_variables", {}), {}, set())
    tfvars = hcl2.loads(
        (example / "terraform.tfvars.example").read_text(), serialization_options=OPTIONS
    )
    for key in ("http_secrets", "pubsub_secrets", "secret_arns"):
        names |= set(tfvars.get(key, {}))
    return names


def unknown_settings(names: set[str]) -> set[str]:
    """The names no setting or library reads (NAME_SECRET_ARN counts as NAME)."""
    return {
        n
        for n in names
        if n != "<NAME>_SECRET_ARN" and n.removesuffix(SECRET_ARN_SUFFIX) not in KNOWN_SETTINGS
    }


# --- format ------------------------------------------------------------------------------


def test_terraform_fmt_check_passes():
    result = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "tf.py"), "fmt-check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, f"terraform fmt -check found:\n{result.stdout}{result.stderr}"


def test_every_tf_file_parses():
    assert len(TF_FILES) == 21  # 4 files in each of 3 modules and 2 examples, + approval.tf
    for path in TF_FILES:
        assert isinstance(load(path), dict), path


def test_modules_and_examples_have_the_standard_files():
    for module in MODULES.values():
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
            assert (module / name).is_file(), f"{module.name} lacks {name}"
    for example in EXAMPLES.values():
        for name in (
            "main.tf",
            "variables.tf",
            "outputs.tf",
            "versions.tf",
            "terraform.tfvars.example",
        ):
            assert (example / name).is_file(), f"example {example.name} lacks {name}"
    assert set(MODULES) == {"gcp-functions", "aws-s3-lambda", "aws-http-lambda"}
    assert set(EXAMPLES) == {"gcp", "aws"}


# --- variables and providers -------------------------------------------------------------


@pytest.mark.parametrize("directory", [*MODULES.values(), *EXAMPLES.values()], ids=lambda p: p.name)
def test_every_variable_is_typed_and_described(directory: Path):
    variables = merged(directory, "variable")
    assert variables
    for name, body in variables.items():
        assert "type" in body, f"{directory.name}: variable {name} has no type"
        assert str(body.get("description", "")).strip(), (
            f"{directory.name}: {name} has no description"
        )


@pytest.mark.parametrize("directory", [*MODULES.values(), *EXAMPLES.values()], ids=lambda p: p.name)
def test_provider_versions_are_pinned_to_a_range(directory: Path):
    terraform_block = load(directory / "versions.tf")["terraform"][0]
    assert "<" in terraform_block["required_version"]
    for providers in terraform_block["required_providers"]:
        for name, spec in providers.items():
            assert ">=" in spec["version"], (name, spec)
            assert "<" in spec["version"], f"{name} has no upper bound: {spec['version']}"


def test_optional_parts_sit_behind_create_flags():
    gcp = merged(MODULES["gcp-functions"], "variable")
    for flag in ("create_http_function", "create_pubsub_function", "create_topic",
                 "create_dead_letter_topic", "create_source_bucket", "create_gcs_function",
                 "create_gcs_bucket", "grant_gcs_agent_publisher"):  # fmt: skip
        assert gcp[flag]["type"] == "${bool}" or gcp[flag]["type"] == "bool", flag


# --- wiring against the code -------------------------------------------------------------


def test_function_environment_only_sets_known_settings():
    seen = {}
    for module in MODULES.values():
        for resource, names in function_environment(module).items():
            assert names, f"{resource} sets no environment: the parser missed it"
            assert not unknown_settings(names), f"{resource} sets unknown {unknown_settings(names)}"
            seen[resource] = names
    gcp_pubsub = ("gcp-functions", "google_cloudfunctions2_function", "pubsub")
    assert "COMPLETER_DEAD_LETTER_TOPIC" in seen[gcp_pubsub]
    for lambda_module in ("aws-s3-lambda", "aws-http-lambda"):
        assert "COMPLETER_BACKEND" in seen[(lambda_module, "aws_lambda_function", "this")]
        assert "<NAME>_SECRET_ARN" in seen[(lambda_module, "aws_lambda_function", "this")]
    assert "COMPLETER_ALLOW_UNSIGNED" in seen[("aws-http-lambda", "aws_lambda_function", "this")]
    assert (
        "COMPLETER_ALLOW_UNSIGNED"
        in seen[("gcp-functions", "google_cloudfunctions2_function", "http")]
    )


@pytest.mark.parametrize("example", EXAMPLES.values(), ids=lambda p: p.name)
def test_examples_pass_only_known_settings(example: Path):
    names = example_settings(example)
    assert "TEMPORAL_ADDRESS" in names
    assert "TEMPORAL_API_KEY" in names, "the example shows no secret"
    assert not unknown_settings(names), unknown_settings(names)


def test_the_settings_check_can_fail():
    names = names_in("${merge(var.x, {COMPLETER_BACKND = var.backend})}", {}, set())
    assert unknown_settings(names) == {"COMPLETER_BACKND"}
    assert not unknown_settings({"TEMPORAL_API_KEY_SECRET_ARN"})
    assert unknown_settings({"TEMPORAL_APIKEY_SECRET_ARN"}) == {"TEMPORAL_APIKEY_SECRET_ARN"}


def test_secret_environment_variables_come_from_secret_manager():
    module = MODULES["gcp-functions"]
    for type_, name, body in blocks(module, "resource"):
        if type_ != "google_cloudfunctions2_function":
            continue
        dynamic = body["service_config"][0]["dynamic"][0]["secret_environment_variables"]
        assert dynamic["for_each"] == f"${{var.{name}_secrets}}"
        env = str(body["service_config"][0]["environment_variables"])
        assert "secret" not in env.lower()


def function_resources() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(module, functions/ directory, body) of every function resource."""
    for module in MODULES.values():
        for type_, name, body in blocks(module, "resource"):
            if (module.name, type_, name) in FUNCTION_RESOURCES:
                yield module.name, FUNCTION_RESOURCES[(module.name, type_, name)], body


@pytest.mark.parametrize("directory", sorted(set(FUNCTION_RESOURCES.values())))
def test_entry_points_exist_in_functions(directory: str):
    deployed = [(m, body) for m, d, body in function_resources() if d == directory]
    assert deployed
    for module, body in deployed:
        if "handler" in body:
            file_name, _, target = body["handler"].partition(".")
        else:
            file_name, target = "main", body["build_config"][0]["entry_point"]
        source = ROOT / "functions" / directory / f"{file_name}.py"
        assert source.is_file(), f"{module} deploys {source}, which does not exist yet"
        defined = {
            node.name
            for node in ast.parse(source.read_text()).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        assert target in defined, f"{source} has no top-level function {target!r}"


def test_pubsub_trigger_retries_and_dead_letters():
    resources = {(t, n): b for t, n, b in blocks(MODULES["gcp-functions"], "resource")}
    trigger = resources[("google_cloudfunctions2_function", "pubsub")]["event_trigger"][0]
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["event_type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    publisher = resources[("google_pubsub_topic_iam_member", "dead_letter_publisher")]
    assert publisher["role"] == "roles/pubsub.publisher"
    assert "google_service_account.pubsub" in publisher["member"]


def test_gcs_trigger_on_finalized_objects_retries_with_least_privilege():
    module = MODULES["gcp-functions"]
    resources = {(t, n): b for t, n, b in blocks(module, "resource")}
    function = resources[("google_cloudfunctions2_function", "gcs")]
    assert function["count"] == "${var.create_gcs_function ? 1 : 0}"
    trigger = function["event_trigger"][0]
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["event_filters"] == [{"attribute": "bucket", "value": "${local.gcs_bucket}"}]
    assert "google_service_account.gcs[0].email" in trigger["service_account_email"]
    assert function["service_config"][0]["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
    reader = resources[("google_storage_bucket_iam_member", "gcs_reader")]
    assert (reader["bucket"], reader["role"]) == (
        "${local.gcs_bucket}",
        "roles/storage.objectViewer",
    )
    receiver = resources[("google_project_iam_member", "gcs_event_receiver")]
    assert receiver["role"] == "roles/eventarc.eventReceiver"
    invoker = resources[("google_cloud_run_service_iam_member", "gcs_trigger_invoker")]
    assert invoker["role"] == "roles/run.invoker"
    for grant in (reader, receiver, invoker):
        assert "google_service_account.gcs[0].member" in grant["member"]
    agent = resources[("google_project_iam_member", "gcs_agent_publisher")]
    assert agent["role"] == "roles/pubsub.publisher"
    assert "data.google_storage_project_service_account.this[0].member" in agent["member"]
    data = {(t, n) for t, n, _ in blocks(module, "data")}
    assert ("google_storage_project_service_account", "this") in data
    dead_letters = resources[("google_pubsub_topic_iam_member", "gcs_dead_letter_publisher")]
    assert "google_service_account.gcs[0].member" in dead_letters["member"]
    environment = function_environment(module)[
        ("gcp-functions", "google_cloudfunctions2_function", "gcs")
    ]
    assert {"COMPLETER_DEAD_LETTER_TOPIC", "COMPLETER_GCS_INLINE_MAX_BYTES"} <= environment


def test_gcp_example_turns_the_gcs_function_on_with_one_variable():
    example = EXAMPLES["gcp"]
    [module] = [body for entry in load(example / "main.tf")["module"] for body in entry.values()]
    assert module["create_gcs_function"] == "${var.gcs_uploads_bucket != null}"
    assert module["gcs_bucket_name"] == "${var.gcs_uploads_bucket}"
    assert module["gcs_source_archive"].endswith("dist/gcp-gcs.zip")
    variable = merged(example, "variable")["gcs_uploads_bucket"]
    assert variable["default"] is None


def test_sqs_delivery_reports_batch_item_failures():
    resources = {(t, n): b for t, n, b in blocks(MODULES["aws-s3-lambda"], "resource")}
    mapping = resources[("aws_lambda_event_source_mapping", "events")]
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert "redrive_policy" in resources[("aws_sqs_queue", "events")]
    permission = resources[("aws_lambda_permission", "bucket")]
    assert permission["source_arn"] == "${local.bucket_arn}"
    assert permission["source_account"] == "${local.account_id}"
    invoke = resources[("aws_lambda_function_event_invoke_config", "this")]
    assert {"maximum_retry_attempts", "maximum_event_age_in_seconds"} <= set(invoke)
    assert "on_failure" in invoke["destination_config"][0]


# --- IAM hygiene -------------------------------------------------------------------------


def test_public_members_only_in_guarded_public_mode():
    public = []
    for directory in [*MODULES.values(), *EXAMPLES.values()]:
        for type_, name, body in blocks(directory, "resource"):
            if "_iam_" not in type_:
                continue
            members = body.get("members", [body.get("member", "")])
            if any(p in str(member) for member in members for p in PUBLIC_MEMBERS):
                public.append((directory.name, type_, name, body))
    # The one public grant: GCP's public mode, created only with http_public and guarded.
    assert [(d, t, n) for d, t, n, _ in public] == [
        ("gcp-functions", "google_cloud_run_service_iam_member", "http_public")
    ]
    body = public[0][3]
    assert body["member"] == "allUsers"
    assert "var.http_public" in body["count"]
    conditions = str(body["lifecycle"][0]["precondition"])
    assert "local.http_guards" in conditions
    for example in EXAMPLES.values():
        text = (example / "terraform.tfvars.example").read_text()
        assert not any(p in text for p in PUBLIC_MEMBERS)


def test_http_invokers_refuse_public_members():
    variable = merged(MODULES["gcp-functions"], "variable")["http_invoker_members"]
    assert variable["default"] == []
    assert "allUsers" in str(variable["validation"])


def policy_statements() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for module in MODULES.values():
        variables = merged(module, "variable")
        for type_, name, body in blocks(module, "data"):
            if type_ != "aws_iam_policy_document":
                continue
            statements = list(body.get("statement", []))
            for dynamic in body.get("dynamic", []):
                statements += dynamic["statement"]["content"]
            for statement in statements:
                yield f"{module.name}:{name}", statement, variables


def resolved(values: object, variables: dict[str, Any]) -> list[str]:
    """A list attribute, with a bare ${var.x} replaced by the variable's default."""
    if isinstance(values, str):
        match = re.fullmatch(r"\$\{var\.(\w+)\}", values)
        return list(variables[match.group(1)].get("default") or []) if match else [values]
    return [str(v) for v in values]  # type: ignore[attr-defined]


def test_no_iam_policy_allows_everything():
    statements = list(policy_statements())
    assert len(statements) >= 8
    for where, statement, variables in statements:
        actions = resolved(statement.get("actions", []), variables)
        resources = resolved(statement.get("resources", []), variables)
        assert actions, where
        for action in actions:
            assert action != "*", where
            assert not action.endswith(":*"), f"{where}: action {action}"
        if "*" in resources:
            assert set(actions) <= UNSCOPABLE_ACTIONS, f"{where}: {actions} on *"


def test_lambda_role_is_limited_to_what_the_function_does():
    actions = set()
    for _, statement, variables in policy_statements():
        if statement.get("sid") != "LambdaAssumesRole":
            actions |= set(resolved(statement.get("actions", []), variables))
    assert actions - {"sqs:SendMessage"} <= {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        *LEDGER_ACTIONS,
        *UNSCOPABLE_ACTIONS,
    }


# --- checkov -----------------------------------------------------------------------------


def test_every_checkov_skip_has_a_reason():
    skips = 0
    for path in TF_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                skips += 1
                assert re.search(r"#checkov:skip=CKV2?_[A-Z]+_\d+:\S.{15,}", line), (
                    f"{path}: {line}"
                )
    assert skips > 0


def test_checkov_finds_no_failed_check():
    make = subprocess.run(
        ["make", "-s", ".venv-checkov/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert make.returncode == 0, f"installing checkov failed:\n{make.stdout}{make.stderr}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "tf.py"), "checkov"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+)", result.stdout)
    assert summary, result.stdout[-2000:]
    assert int(summary.group(1)) > 40
    assert summary.group(2) == "0"


# --- public exposure (docs/security.md): only with signing secrets or the link secret --------


def resources_of(module: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(t, n): b for t, n, b in blocks(MODULES[module], "resource")}


def preconditions(body: dict[str, Any]) -> list[str]:
    return [p["condition"] for p in body["lifecycle"][0]["precondition"]]


def evaluate(module: str, conditions: list[str], cases: list[dict[str, Any]], tmp: Path) -> Any:
    """The conditions' values for each case, computed by a real Terraform (no provider needed).

    Each condition's ``local.x`` is inlined from the module and ``var.x`` read from the case.
    """
    local_values = merged(MODULES[module], "locals")

    def inline(expression: str) -> str:
        expression = expression.removeprefix("${").removesuffix("}")
        for _ in range(3):
            expression = re.sub(
                r"local\.(\w+)", lambda m: f"({inline(local_values[m.group(1)])})", expression
            )
        return re.sub(r"\bvar\.", "c.", expression)

    rows = ", ".join(inline(c) for c in conditions)
    (tmp / "main.tf").write_text(
        f'locals {{\n  cases = jsondecode(file("${{path.module}}/cases.json"))\n}}\n'
        f'output "results" {{\n  value = [for c in local.cases : [{rows}]]\n}}\n'
    )
    (tmp / "cases.json").write_text(__import__("json").dumps(cases))
    script = (
        "import sys, json; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
        "from tf import terraform\n"
        "d = Path(sys.argv[2])\n"
        "assert terraform(['init', '-input=false', '-no-color'], cwd=d) == 0\n"
        "assert terraform(['apply', '-auto-approve', '-input=false', '-no-color'], cwd=d) == 0\n"
        "assert terraform(['output', '-json', 'results'], cwd=d) == 0\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "packaging"), str(tmp)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    output = done.stdout[done.stdout.rindex("\n[") :]
    return __import__("json").loads(output)


def test_gcp_http_function_is_private_by_default():
    variables = merged(MODULES["gcp-functions"], "variable")
    assert variables["http_public"]["default"] is False
    locals_ = merged(MODULES["gcp-functions"], "locals")
    assert locals_["http_ingress"] == '${var.http_public ? "ALLOW_ALL" : var.http_ingress_settings}'
    function = resources_of("gcp-functions")[("google_cloudfunctions2_function", "http")]
    assert function["service_config"][0]["ingress_settings"] == "${local.http_ingress}"
    assert function["service_config"][0]["environment_variables"] == "${local.http_environment}"


def test_gcp_public_mode_needs_a_guard(tmp_path: Path):
    resources = resources_of("gcp-functions")
    conditions = [
        *preconditions(resources[("google_cloudfunctions2_function", "http")]),
        *preconditions(resources[("google_cloud_run_service_iam_member", "http_public")]),
    ]
    secret = {"secret": "s", "version": "latest"}
    cases = [
        {"http_public": False, "http_secrets": {}, "environment_variables": {}},
        {"http_public": True, "http_secrets": {}, "environment_variables": {}},
        {"http_public": True, "http_secrets": {"TEMPORAL_API_KEY": secret},
         "environment_variables": {}},
        {"http_public": True, "http_secrets": {"COMPLETER_LINK_SECRET": secret},
         "environment_variables": {}},
        {"http_public": True, "http_secrets": {"COMPLETER_SIGNING_SECRETS": secret},
         "environment_variables": {"COMPLETER_ALLOW_UNSIGNED": "True"}},
    ]  # fmt: skip
    results = evaluate("gcp-functions", conditions, cases, tmp_path)
    # [function: guarded, function: not unsigned, public member: guarded]
    assert results == [
        [True, True, False],  # private: the public member is not created (count 0)
        [False, True, False],
        [False, True, False],
        [True, True, True],
        [True, False, True],
    ]


def test_aws_http_function_url_is_iam_unless_public(tmp_path: Path):
    variables = merged(MODULES["aws-http-lambda"], "variable")
    assert variables["public"]["default"] is False
    assert "*" in str(variables["invoker_principals"]["validation"])
    resources = resources_of("aws-http-lambda")
    url = resources[("aws_lambda_function_url", "this")]
    assert url["authorization_type"] == '${var.public ? "NONE" : "AWS_IAM"}'
    for name in ("public_url", "public_invoke"):
        assert "var.public" in resources[("aws_lambda_permission", name)]["count"]
    # The second public grant works only through the URL, never the Invoke API.
    assert resources[("aws_lambda_permission", "public_invoke")]["invoked_via_function_url"]
    assert resources[("aws_lambda_permission", "public_url")]["function_url_auth_type"] == "NONE"
    versions = load(MODULES["aws-http-lambda"] / "versions.tf")["terraform"][0]
    assert ">= 6.29.0" in versions["required_providers"][0]["aws"]["version"]

    cases = [
        {"public": False, "secret_arns": {}, "environment_variables": {}},
        {"public": True, "secret_arns": {}, "environment_variables": {}},
        {"public": True, "secret_arns": {"TEMPORAL_API_KEY": "arn:t"},
         "environment_variables": {}},
        {"public": True, "secret_arns": {"COMPLETER_SIGNING_SECRETS": "arn:s"},
         "environment_variables": {}},
        {"public": True, "secret_arns": {"COMPLETER_LINK_SECRET": "arn:l"},
         "environment_variables": {"COMPLETER_ALLOW_UNSIGNED": "true"}},
    ]  # fmt: skip
    results = evaluate("aws-http-lambda", preconditions(url), cases, tmp_path)
    assert results == [[True, True], [False, True], [False, True], [True, True], [True, False]]


def test_aws_example_wires_a_step_functions_approval_flow():
    example = EXAMPLES["aws"]
    modules = {n: b for e in load(example / "main.tf").get("module", []) for n, b in e.items()}
    modules |= {n: b for e in load(example / "approval.tf").get("module", []) for n, b in e.items()}
    http = modules["http"]
    assert http["source"] == "../../modules/aws-http-lambda"
    assert http["package_path"].endswith("dist/http-lambda.zip")
    assert http["public"] is True
    assert http["backend"] == "stepfunctions"
    assert "COMPLETER_LINK_SECRET" in http["secret_arns"]
    resources = {(t, n): b for t, n, b in blocks(example, "resource")}
    machine = resources[("aws_sfn_state_machine", "approval")]
    definition = machine["definition"]
    assert "arn:aws:states:::lambda:invoke.waitForTaskToken" in definition
    assert "$$.Task.Token" in definition
    notifier = resources[("aws_lambda_function", "notifier")]
    module_name, _, function = notifier["handler"].rpartition(".")
    assert (module_name, function) == ("completer.activity", "stepfunctions_approval_handler")
    import completer.activity

    assert callable(getattr(completer.activity, function))
    environment = notifier["environment"][0]["variables"]
    assert environment["APPROVAL_FUNCTION_URL"] == "${module.http.function_url}"
    assert set(environment) == {
        "APPROVAL_FUNCTION_URL",
        "APPROVAL_TOPIC_ARN",
        "COMPLETER_LINK_SECRET_SECRET_ARN",
    }
    outputs = {n for e in load(example / "outputs.tf")["output"] for n in e}
    assert {"http_function_url", "approval_state_machine_arn"} <= outputs


# --- completion ledger -------------------------------------------------------------------


def test_aws_ledger_table_matches_the_dynamodb_store():
    module = MODULES["aws-s3-lambda"]
    resources = {(t, n): b for t, n, b in blocks(module, "resource")}
    table = resources[("aws_dynamodb_table", "ledger")]
    assert table["count"] == "${var.create_ledger ? 1 : 0}"
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["hash_key"] == "id"
    assert table["attribute"] == [{"name": "id", "type": "S"}]
    assert table["ttl"] == [{"attribute_name": "expiration", "enabled": True}]
    assert table["point_in_time_recovery"] == [{"enabled": True}]
    assert table["server_side_encryption"][0]["enabled"] is True
    ledger_statements = [
        statement
        for where, statement, _ in policy_statements()
        if where.startswith("aws-s3-lambda") and statement.get("sid") == "UseLedger"
    ]
    assert len(ledger_statements) == 1
    assert set(ledger_statements[0]["actions"]) == LEDGER_ACTIONS
    assert ledger_statements[0]["resources"] == ["${aws_dynamodb_table.ledger[0].arn}"]
    env = merged(module, "locals")["ledger_environment"]
    assert "dynamodb://${local.ledger_table}" in env
    assert (
        "COMPLETER_LEDGER"
        in function_environment(module)[("aws-s3-lambda", "aws_lambda_function", "this")]
    )


def test_gcp_ledger_has_a_ttl_policy_and_scoped_access():
    module = MODULES["gcp-functions"]
    resources = {(t, n): b for t, n, b in blocks(module, "resource")}
    field = resources[("google_firestore_field", "ledger_expiration")]
    assert field["field"] == "expiration"  # completer.ledger.firestore writes it as a timestamp
    assert field["collection"] == "${local.ledger_collection}"
    assert "ttl_config" in field
    grant = resources[("google_project_iam_member", "ledger")]
    assert grant["role"] == "roles/datastore.user"
    assert grant["for_each"] == "${local.ledger_members}"
    assert "databases/${var.ledger_database}" in grant["condition"][0]["expression"]
    env = merged(module, "locals")["ledger_environment"]
    assert "firestore://${var.ledger_database}/${local.ledger_collection}" in env
    for resource in (
        ("google_cloudfunctions2_function", "http"),
        ("google_cloudfunctions2_function", "pubsub"),
    ):
        assert "COMPLETER_LEDGER" in function_environment(module)[("gcp-functions", *resource)]


@pytest.mark.parametrize("example", EXAMPLES.values(), ids=lambda p: p.name)
def test_examples_turn_the_ledger_on(example: Path):
    module = load(example / "main.tf")["module"][0]["completer"]
    assert module["create_ledger"] is True


def test_s3_lambda_dead_letters_refused_uploads_to_its_queue():
    module = MODULES["aws-s3-lambda"]
    environment = merged(module, "locals")["environment"]
    assert (
        "COMPLETER_DEAD_LETTER_QUEUE"
        in function_environment(module)[("aws-s3-lambda", "aws_lambda_function", "this")]
    )
    assert "aws_sqs_queue.dead_letter.url" in str(environment)
    # Granted in both deliveries: an unconditional statement, not a dynamic one.
    [(_, _, policy)] = [
        block
        for block in blocks(module, "data")
        if block[:2] == ("aws_iam_policy_document", "this")
    ]
    sends = [s for s in policy["statement"] if "sqs:SendMessage" in s.get("actions", [])]
    assert [s["resources"] for s in sends] == [["${aws_sqs_queue.dead_letter.arn}"]]


def test_aws_http_function_shares_the_ledger_table_with_least_access():
    module = MODULES["aws-http-lambda"]
    variables = merged(module, "variable")
    assert variables["ledger_table_arn"]["default"] is None
    statements = [
        statement
        for where, statement, _ in policy_statements()
        if where.startswith("aws-http-lambda") and statement.get("sid") == "UseLedger"
    ]
    assert len(statements) == 1
    assert set(statements[0]["actions"]) == LEDGER_ACTIONS
    assert statements[0]["resources"] == ["${var.ledger_table_arn}"]
    assert (
        "COMPLETER_LEDGER"
        in function_environment(module)[("aws-http-lambda", "aws_lambda_function", "this")]
    )
    http = {n: b for e in load(EXAMPLES["aws"] / "approval.tf")["module"] for n, b in e.items()}
    assert http["http"]["ledger_table_arn"] == "${module.completer.ledger_table_arn}"
