// Streaming XML for WebDAV answers (sax): elements at a chosen depth are built as small namespace-resolved trees and
// handed over one at a time, so a multistatus of any size holds one <response> at a time.
import { StringDecoder } from 'node:string_decoder';
import sax from 'sax';

/** An XML element with its namespace resolved; `text` joins its text and CDATA children exactly as sent. */
export interface XmlNode {
  ns: string;
  name: string;
  /** Attributes by their name as written (namespace declarations left out). */
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

/** Settings of an XmlStream. */
export interface XmlStreamOptions {
  /**
   * Depth of the elements built whole and handed to `onElement` when they close (0: the root, so the whole document;
   * 1: the root's children, as the <response>s of a multistatus). Shallower elements are seen only as they open.
   */
  depth: number;
  /** The root element as it opens (no children or text yet); may throw to refuse the document. */
  onRoot?: (root: XmlNode) => void;
  onElement: (node: XmlNode) => void;
  /** Most characters of text one element built whole may hold (guards memory against a runaway answer). */
  maxChars?: number;
}

interface Open {
  node: XmlNode;
  /** Some of its text came from CDATA (kept even when it is only whitespace). */
  cdata: boolean;
}

/**
 * A strict, namespace-aware XML parser fed chunk by chunk (Buffers split anywhere, even inside a UTF-8 sequence).
 * Entities and character references are decoded, CDATA is kept as text, and names are resolved by namespace URI,
 * whatever the prefixes. Whitespace-only text between elements is dropped. Errors (malformed XML, an unbound prefix,
 * an unknown entity, a truncated document) are thrown from write/end.
 */
export class XmlStream {
  private readonly parser: sax.SAXParser;
  private readonly decoder = new StringDecoder('utf8');
  private readonly stack: Open[] = [];
  private readonly depth: number;
  private readonly maxChars: number;
  /** Characters of text in the element being built. */
  private chars = 0;
  private sawRoot = false;

  constructor(o: XmlStreamOptions) {
    this.depth = o.depth;
    this.maxChars = o.maxChars ?? Infinity;
    const p = sax.parser(true, { xmlns: true, trim: false, normalize: false, position: true });
    this.parser = p;
    p.onerror = (err: Error) => {
      throw new Error(err.message.replace(/\s+/g, ' ').trim());
    };
    p.onopentag = (tag) => {
      const t = tag as sax.QualifiedTag;
      const attrs: Record<string, string> = {};
      for (const a of Object.values(t.attributes)) {
        if (a.name !== 'xmlns' && a.prefix !== 'xmlns') attrs[a.name] = a.value;
      }
      const node: XmlNode = { ns: t.uri, name: t.local, attrs, children: [], text: '' };
      const level = this.stack.length;
      if (level === 0) {
        if (this.sawRoot) throw new Error('more than one root element');
        this.sawRoot = true;
        o.onRoot?.(node);
      }
      if (level > this.depth) this.stack[level - 1]?.node.children.push(node);
      if (level === this.depth) this.chars = 0;
      this.stack.push({ node, cdata: false });
    };
    p.onclosetag = () => {
      const open = this.stack.pop();
      if (!open) return;
      if (!open.cdata && open.node.text.trim() === '') open.node.text = '';
      if (this.stack.length === this.depth) o.onElement(open.node);
    };
    p.ontext = (text: string) => this.addText(text, false);
    p.oncdata = (text: string) => this.addText(text, true);
  }

  private addText(text: string, cdata: boolean): void {
    const open = this.stack[this.stack.length - 1];
    if (!open || this.stack.length <= this.depth) return;
    this.chars += text.length;
    if (this.chars > this.maxChars) throw new Error(`an element holds more than ${Math.floor(this.maxChars / 1024 / 1024)} MiB of text`);
    open.node.text += text;
    if (cdata) open.cdata = true;
  }

  /** Parses the next piece of the document. */
  write(chunk: Buffer | string): void {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    if (text !== '') this.parser.write(text);
  }

  /** Ends the document: throws when it is empty or incomplete. */
  end(): void {
    const rest = this.decoder.end();
    if (rest !== '') this.parser.write(rest);
    this.parser.close();
    if (!this.sawRoot) throw new Error('empty XML document');
  }
}

/** Parses a whole XML document into namespace-resolved nodes (no trimming, no type conversion: property text stays exact). */
export function parseXml(text: string | Buffer): XmlNode {
  let root: XmlNode | undefined;
  const s = new XmlStream({
    depth: 0,
    onElement: (n) => {
      root = n;
    },
  });
  s.write(text);
  s.end();
  if (!root) throw new Error('empty XML document');
  return root;
}
