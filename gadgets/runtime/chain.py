"""Chain files: Gadgetron 4 stream configurations (version 2), read the same way for the
embedded runner as a real Gadgetron reads them.

Python steps are written as Gadgetron runs them::

    <external>
      <execute name="gadgets.preview" target="SumOfSquaresPreview" type="python"/>
      <configuration>
        <property name="oversampling" value="2"/>
      </configuration>
    </external>

The legacy form ``<gadget><classname>PythonGadget</classname>`` with ``python_module`` and
``python_class`` properties is read as the same thing. Any other ``<gadget>`` is a C++ gadget:
it runs under a real Gadgetron only, and loading the chain for the embedded runner says so.
``<readers>`` and ``<writers>`` are for Gadgetron; the embedded runner reads and writes every
message type itself.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from gadgets.runtime.context import StepContext
from gadgets.runtime.gadget import Gadget, PropertyError
from gadgets.runtime.header import HeaderError, validate_header

__all__ = [
    "ChainError",
    "ChainSpec",
    "StepSpec",
    "check_modules",
    "location_properties",
    "import_target",
    "instantiate",
    "load_chain",
    "parse_chain",
    "resolve_chain",
]


class ChainError(ValueError):
    """A chain that cannot be loaded, naming the chain, the step and what is wrong."""


@dataclass(frozen=True)
class StepSpec:
    name: str
    module: str
    target: str
    properties: dict[str, str] = field(default_factory=dict)
    cpp: bool = False  # a C++ gadget: real Gadgetron only


@dataclass(frozen=True)
class ChainSpec:
    """A parsed chain: its name, steps, text, and the folder its file is in (None: sent as
    text by a client)."""

    name: str
    steps: tuple[StepSpec, ...]
    xml: str
    folder: Path | None = None


def resolve_chain(name_or_path: str | Path, chains_dir: Path) -> Path:
    """A chain file from a path, or a name in ``chains_dir`` with or without ``.xml``."""
    path = Path(name_or_path)
    if _is_file(path):
        return path
    name = path.name if path.suffix == ".xml" else f"{path.name}.xml"
    candidate = chains_dir / name
    if path.parent == Path(".") and _is_file(candidate):
        return candidate
    known = ", ".join(sorted(p.stem for p in chains_dir.glob("*.xml")))
    shown = repr(str(name_or_path)[:80]) + ("..." if len(str(name_or_path)) > 80 else "")
    raise ChainError(f"unknown chain {shown} (chains in {chains_dir}: {known})")


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL
        return False


def parse_chain(xml: str, name: str = "<text>") -> ChainSpec:
    """Parse a stream configuration (text) into its steps."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ChainError(f"chain {name}: not valid XML: {exc}") from exc
    root = _strip_namespaces(root)
    if root.tag != "configuration":
        raise ChainError(f"chain {name}: root element is <{root.tag}>, expected <configuration>")
    stream = root.find("stream")
    if stream is None:
        raise ChainError(f"chain {name}: no <stream>")
    steps: list[StepSpec] = []
    for i, node in enumerate(stream):
        if node.tag == "external":
            steps.append(_external(node, name, i))
        elif node.tag == "gadget":
            steps.append(_gadget(node, name, i))
        else:
            raise ChainError(
                f"chain {name}: step {i + 1} is <{node.tag}>, not a gadget or external"
            )
    if not steps:
        raise ChainError(f"chain {name}: the stream has no steps")
    return ChainSpec(name, tuple(steps), xml)


def load_chain(name_or_path: str | Path, chains_dir: Path) -> ChainSpec:
    """The chain file ``name_or_path`` (see :func:`resolve_chain`), parsed."""
    path = resolve_chain(name_or_path, chains_dir)
    spec = parse_chain(path.read_text(), path.stem)
    return ChainSpec(spec.name, spec.steps, spec.xml, path.resolve().parent)


def _strip_namespaces(root: ET.Element) -> ET.Element:
    for el in root.iter():
        if isinstance(el.tag, str) and "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _external(node: ET.Element, chain: str, index: int) -> StepSpec:
    execute = node.find("execute")
    if execute is None or not execute.get("name") or not execute.get("target"):
        raise ChainError(f"chain {chain}: external step {index + 1} lacks <execute name= target=>")
    kind = execute.get("type", "python")
    if kind != "python":
        raise ChainError(
            f"chain {chain}: external step {index + 1} is of type {kind!r}, not python"
        )
    props: dict[str, str] = {}
    config = node.find("configuration")
    if config is not None:
        for p in config.findall("property"):
            if p.get("name") is None:
                raise ChainError(f"chain {chain}: a property of step {index + 1} has no name")
            props[p.get("name")] = p.get("value", "")
    module, target = execute.get("name"), execute.get("target")
    return StepSpec(target, module, target, props)


def _gadget(node: ET.Element, chain: str, index: int) -> StepSpec:
    name = (node.findtext("name") or f"step{index + 1}").strip()
    classname = (node.findtext("classname") or "").strip()
    dll = (node.findtext("dll") or "").strip()
    props: dict[str, str] = {}
    for p in node.findall("property"):
        key = (p.findtext("name") or "").strip()
        if not key:
            raise ChainError(f"chain {chain}: a property of gadget {name!r} has no name")
        props[key] = (p.findtext("value") or "").strip()
    if classname == "PythonGadget":
        module, target = props.pop("python_module", ""), props.pop("python_class", "")
        props.pop("python_path", None)
        if not module or not target:
            raise ChainError(
                f"chain {chain}: PythonGadget {name!r} needs python_module and python_class"
            )
        return StepSpec(name, module, target, props)
    return StepSpec(name, dll, classname, props, cpp=True)


def instantiate(
    spec: ChainSpec,
    header: object,
    overrides: dict[str, str] | None = None,
    allowed_modules: tuple[str, ...] | None = None,
    context: StepContext | None = None,
) -> list[tuple[str, Gadget]]:
    """Build every step of a chain for the embedded runner, with property overrides applied to
    each step that declares them. Errors name the chain, the step and the property.
    ``allowed_modules``: packages steps may come from (None: any; the server restricts them,
    since importing a module runs its code). ``context``: where the chain runs (each step gets
    a copy naming itself; the chain's folder is added to its resource folders)."""
    base = context or StepContext()
    dirs = ((spec.folder,) if spec.folder else ()) + base.resource_dirs
    overrides = dict(overrides or {})
    used: set[str] = set()
    steps: list[tuple[str, Gadget]] = []
    classes = []
    if allowed_modules is not None:
        check_modules(spec, allowed_modules)
    for step in spec.steps:
        if step.cpp:
            raise ChainError(
                f"chain {spec.name}: step {step.name!r} is the C++ gadget {step.target} "
                f"({step.module or 'no dll'}), which only a Gadgetron server can run; the embedded "
                "runtime runs <external> Python steps"
            )
        where = f"chain {spec.name}: step {step.name!r}"
        classes.append(import_target(step.module, step.target, where))
    if header is not None:  # one check of the header for the whole chain, before any step
        try:
            validate_header(header, {need for cls in classes for need in cls.header_needs})
        except HeaderError as exc:
            raise HeaderError(f"chain {spec.name}: {exc}") from exc
    for step, cls in zip(spec.steps, classes, strict=True):
        values = dict(step.properties)
        for key, value in overrides.items():
            if key in cls.properties or cls.forwards_properties:
                values[key] = value
                used.add(key)
        ctx = dataclasses.replace(base, chain=spec.name, step=step.name, resource_dirs=dirs)
        try:
            steps.append((step.name, cls(header, ctx, **values)))
        except HeaderError:
            raise
        except (PropertyError, ValueError, AttributeError, TypeError) as exc:
            # a bad setting, or a header without what the step needs
            raise ChainError(f"chain {spec.name}: step {step.name!r}: {exc}") from exc
    unused = sorted(set(overrides) - used)
    if unused:
        raise ChainError(
            f"chain {spec.name}: no step has a property {unused[0]!r} (set by --set or the client)"
        )
    return steps


def check_modules(spec: ChainSpec, allowed_modules: tuple[str, ...]) -> None:
    """Refuse a chain with a step from a package outside ``allowed_modules`` (before anything
    is imported: importing a module runs its code)."""
    for step in spec.steps:
        if not step.cpp and not any(
            step.module == m or step.module.startswith(m + ".") for m in allowed_modules
        ):
            raise ChainError(
                f"chain {spec.name}: step {step.name!r}: module {step.module!r} is not allowed "
                "on this server"
            )


def location_properties(
    spec: ChainSpec,
    overrides: dict[str, str],
    in_chain_text: bool = False,
    packages: tuple[str, ...] = (),
) -> list[str]:
    """``step.property`` of every property that names a place on the server
    (``Property.location``) set by ``overrides`` -- and, with ``in_chain_text``, by the chain's
    own text (a chain sent by a client). For a step that forwards its properties to other
    chains (``Gadget.forwards_properties``), a name counts if any gadget of ``packages``
    declares it a location."""
    found = []
    for step in spec.steps:
        if step.cpp:
            continue
        cls = import_target(step.module, step.target, f"chain {spec.name}: step {step.name!r}")
        values = {**(step.properties if in_chain_text else {}), **overrides}
        declaring = _gadget_classes(packages) if cls.forwards_properties else (cls,)
        for name in sorted(values):
            props = (c.properties.get(name) for c in declaring)
            if any(p is not None and p.names_location(str(values[name])) for p in props):
                found.append(f"{step.name}.{name}")
    return found


def _gadget_classes(packages: tuple[str, ...]) -> list[type[Gadget]]:
    """Every gadget class of the top-level modules of ``packages``, and any imported."""
    for package in packages:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if not info.ispkg:
                importlib.import_module(f"{package}.{info.name}")
    found, todo = [], [Gadget]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return found


def import_target(module: str, target: str, where: str) -> type[Gadget]:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ChainError(f"{where}: cannot import module {module!r}: {exc}") from exc
    cls = getattr(mod, target, None)
    if not (isinstance(cls, type) and issubclass(cls, Gadget)):
        raise ChainError(f"{where}: {module}.{target} is not a gadget class")
    return cls
