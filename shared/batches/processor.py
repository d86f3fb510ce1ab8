"""How an app processes each batch input: a prompt template rendered with the input's
fields, sent to a model through the provider registry (the simulation included).

Templates are Jinja2 in a sandbox (no access to Python internals), with every top-level
field of the input as a variable and the whole input as ``input``; an undefined variable is
an error, not an empty string, so a template that does not fit its inputs fails loudly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from shared.ai_models import AI_MODELS
from shared.errors import InvalidInput

DEFAULT_TEMPLATE = "{{ input | tojson }}"
DEFAULT_MODEL = "gpt-4.1-mini"
_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class Processor:
    prompt_template: str = DEFAULT_TEMPLATE
    model: str = DEFAULT_MODEL
    web_search: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "promptTemplate": self.prompt_template,
            "model": self.model,
            "webSearch": self.web_search,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Processor:
        data = data or {}
        default = asdict(cls())
        return cls(
            prompt_template=data.get("promptTemplate", default["prompt_template"]),
            model=data.get("model", default["model"]),
            web_search=bool(data.get("webSearch", default["web_search"])),
        )


def check(processor: Processor) -> Processor:
    """The processor, if its template compiles and its model exists (InvalidInput)."""
    if processor.model not in AI_MODELS:
        raise InvalidInput(
            f"model must be one of {', '.join(AI_MODELS)}", details=["model: unknown model"]
        )
    try:
        _env.from_string(processor.prompt_template)
    except TemplateError as exc:
        raise InvalidInput(
            f"promptTemplate does not compile: {exc}", details=[f"promptTemplate: {exc}"]
        ) from exc
    return processor


@lru_cache(maxsize=256)
def _compiled(template: str) -> Template:
    """Compiling costs far more than rendering: once per template and process."""
    return _env.from_string(template)


def render(template: str, input: dict[str, Any]) -> str:
    """The prompt for one input (ValueError naming what did not fit)."""
    try:
        return _compiled(template).render({**input, "input": input})
    except TemplateError as exc:
        raise ValueError(f"the prompt template does not fit this input: {exc}") from exc
