import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("../../", import.meta.url));
export const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
export const cli = fileURLToPath(new URL("../../bin/realfork.js", import.meta.url));
export const cBin = (name: string): string => fileURLToPath(new URL(`../../c/build/${name}`, import.meta.url));
