// The forking server, one import away: the class, its types, and the echo
// loop `realfork serve` hands it.
export { formatAddress } from "./server/connection.js";
export { echo, echoHandler } from "./server/echo.js";
export { ForkingServer } from "./server/forking-server.js";
export type * from "./server/types.js";
