// The package's entry: the client SDK. The server is started with the `grace` command
// (bin/grace.js), or from code with `grace-registry/server`.

export * from './sdk/index.js'
