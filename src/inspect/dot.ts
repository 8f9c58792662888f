// The descriptor picture as Graphviz DOT (`realfork fds PID --dot | dot -Tsvg`):
// the same model as the SVG, laid out by Graphviz from left (processes) to
// right (sockets), one edge per descriptor, findings in red.
import { escapeXml, findingText, type PictureModel, FINDING_COLOUR as RED, refsText, socketLines } from "./picture.js";

function quote(text: string): string {
  return `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

export function renderDot(model: PictureModel): string {
  const lines = [
    "digraph fds {",
    `  label=${quote([model.title, model.caption, ...model.findings.map(findingText)].filter(Boolean).join("\\n"))};`,
    "  labelloc=t; rankdir=LR; nodesep=0.25; ranksep=1.2;",
    '  node [shape=plaintext fontname="monospace" fontsize=11];',
    "  edge [arrowsize=0.7];",
  ];
  for (const p of model.processes) {
    const border = p.flagged ? ` color="${RED}"` : "";
    const rows = p.rows.map((r) => {
      const text = escapeXml(r.fd === null ? r.text : `fd ${r.fd} ${r.text}`);
      const port = r.fd === null ? "" : ` port="fd${r.fd}"`;
      return `<tr><td align="left"${port}${r.flagged ? ` bgcolor="#fde2e2"><font color="${RED}"><b>${text}</b></font>` : `>${text}`}</td></tr>`;
    });
    lines.push(
      `  p${p.pid} [label=<<table border="1" cellborder="0" cellspacing="0"${border}><tr><td align="left"><b>${escapeXml(`${p.role} ${p.pid}`)}</b> (ppid ${p.ppid})</td></tr>${rows.join("")}</table>>];`,
    );
  }
  for (const { socket: s, flagged } of model.sockets) {
    const colour = flagged ? RED : "black";
    const body = [...socketLines(s), refsText(s)].map((l) => escapeXml(l)).join('</td></tr><tr><td align="left">');
    lines.push(
      `  s${s.inode} [label=<<table border="${flagged ? 3 : 1}" cellborder="0" color="${colour}"><tr><td align="left">${body}</td></tr></table>>];`,
    );
    for (const h of s.holders) {
      lines.push(`  p${h.pid}:fd${h.fd} -> s${s.inode}${flagged ? ` [color="${RED}" penwidth=2]` : ""};`);
    }
  }
  lines.push("}", "");
  return lines.join("\n");
}
