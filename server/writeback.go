package server

// writebackChunk is how much an upload writes before its writeback is
// started: large enough that the calls cost nothing next to the copy
// (64 per 512 MiB), small enough that the disk starts early.
const writebackChunk = 8 << 20
