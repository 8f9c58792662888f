export declare const row: (i: number) => string;
export declare function loadTable(rows: number): string[];
export declare function handler(table: string[]): import("node:http").RequestListener;
export declare function exampleArgs(extra?: Record<string, unknown>): Record<string, string | undefined>;
