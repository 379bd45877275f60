"""Datamapper, default mappings, mapping tables and transform functions.

    mapping = build_mapping(integration, "orders", "exactonline")     # compile once
    payload = mapping.apply(order, context={"account": guid, "items": {"SKU-1": guid}})
    body = dumps(payload)                                              # exact decimals

See docs/datamapper.md for the mapping language, the functions and the tables.
"""

from gateway.payload import dumps
from transforms.datamapper import CompiledMapping, compile_mapping
from transforms.debtor import Debtor, decide_debtor
from transforms.errors import FieldProblem, FunctionError, MappingError, MappingSpecError
from transforms.inputs import mapping_input
from transforms.integration import EffectiveMapping, build_mapping, effective_mapping, validate_integration
from transforms.registry import DefaultMapping, default_mapping, documents

__all__ = [
    "CompiledMapping",
    "Debtor",
    "DefaultMapping",
    "EffectiveMapping",
    "FieldProblem",
    "FunctionError",
    "MappingError",
    "MappingSpecError",
    "build_mapping",
    "compile_mapping",
    "decide_debtor",
    "default_mapping",
    "documents",
    "dumps",
    "effective_mapping",
    "mapping_input",
    "validate_integration",
]
