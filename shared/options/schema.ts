// Renders an option list as the JSON Schema (draft 2020-12) `validator` file shipped in each package.
import type { OptionList, OptionSpec } from './builders.ts';
import { firstLine, HOST_KEYS } from './parse.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function propertySchema(spec: OptionSpec): Record<string, Json> {
  const s: Record<string, Json> = { description: firstLine(spec.help) };
  switch (spec.kind) {
    case 'bool':
      s.type = ['boolean', 'string'];
      s.pattern = '^(?:[Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff]|[01yYnN])$';
      break;
    case 'int':
      s.type = ['integer', 'string'];
      s.pattern = '^[+-]?[0-9]+$';
      if (spec.min !== undefined) s.minimum = spec.min;
      if (spec.max !== undefined) s.maximum = spec.max;
      break;
    case 'size':
      s.type = ['integer', 'string'];
      s.pattern = '^\\s*[0-9]+(?:\\.[0-9]+)?\\s*(?:[bB]|[kKmMgGtT](?:[iI]?[bB]?)?)?\\s*$';
      break;
    case 'duration':
      s.type = ['integer', 'string'];
      s.pattern = '^(?:[0-9]+(?:\\.[0-9]+)?|(?:[0-9]+(?:\\.[0-9]+)?(?:ms|s|m|h|d))+)$';
      break;
    case 'enum':
      s.type = 'string';
      s.enum = [...(spec.choices ?? [])];
      break;
    case 'url':
      s.type = 'string';
      s.format = 'uri';
      break;
    case 'list':
    case 'string':
      s.type = 'string';
      if (spec.pattern) s.pattern = spec.pattern;
      break;
  }
  if (spec.defaultText !== undefined && !spec.secret) {
    s.default = spec.kind === 'bool' ? spec.defaultValue === true : spec.defaultText;
  }
  if (spec.secret) s.writeOnly = true;
  if (spec.examples.length > 0) s.examples = [...spec.examples];
  return s;
}

/** The JSON Schema of one connector's config map. `locationPattern` constrains `location`. */
export function renderSchema(
  title: string,
  specs: OptionList,
  locationHelp: string,
  locationPattern?: string,
): Record<string, Json> {
  const properties: Record<string, Json> = {
    location: { type: 'string', description: locationHelp, ...(locationPattern ? { pattern: locationPattern } : {}) },
  };
  for (const key of HOST_KEYS) {
    if (key !== 'location') properties[key] = { type: 'string', description: 'Set by Plakar; not read by this connector.' };
  }
  for (const spec of specs) {
    properties[spec.key] = propertySchema(spec);
    for (const alias of spec.deprecatedAlias) {
      properties[alias] = { ...propertySchema(spec), deprecated: true, description: `Deprecated alias of ${spec.key}.` };
    }
  }
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title,
    type: 'object',
    required: ['location', ...specs.filter((s) => s.required).map((s) => s.key)],
    properties,
    additionalProperties: false,
  };
}
