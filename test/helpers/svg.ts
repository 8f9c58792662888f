// The pictures' checks with npm packages only, so that they run wherever
// `npm install` ran: saxes parses the SVG as XML 1.0 with namespaces (strict:
// one root, every entity defined, no stray '<' or '&'), and resvg renders it
// (its binary comes in its npm package) with the DejaVu Sans Mono of the
// dejavu-fonts-ttf package, the first font the pictures ask for. System fonts
// are not loaded: every machine draws the same pixels, text included.
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Resvg } from "@resvg/resvg-js";
import { SaxesParser } from "saxes";

const fonts = join(dirname(createRequire(import.meta.url).resolve("dejavu-fonts-ttf/package.json")), "ttf");

/** Throws with the parser's first message when `xml` is not a well-formed XML document. */
export function wellFormed(xml: string): void {
  const parser = new SaxesParser({ xmlns: true });
  const errors: Error[] = [];
  parser.on("error", (err) => errors.push(err));
  parser.write(xml).close();
  if (errors.length > 0) throw new Error(`not well-formed XML: ${errors[0]?.message}`);
}

/** The SVG rendered to a PNG at its own size. */
export function png(svg: string): Buffer {
  const font = {
    loadSystemFonts: false,
    fontFiles: [join(fonts, "DejaVuSansMono.ttf"), join(fonts, "DejaVuSansMono-Bold.ttf")],
    defaultFontFamily: "DejaVu Sans Mono",
    monospaceFamily: "DejaVu Sans Mono",
  };
  return new Resvg(svg, { font }).render().asPng();
}
