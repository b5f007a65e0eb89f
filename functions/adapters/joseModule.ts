/**
 * The parts of jose the token endpoint uses, loaded on first use: they are needed only when the
 * IdP is called (a client assertion to sign, a token to verify), never on the warm path, so the
 * bundle keeps them in a chunk of its own that a cold start does not load (esbuild code
 * splitting, scripts/build.mjs). A facade rather than `import('jose')`, so the chunk stays
 * tree-shaken. Import this module only with `import()`.
 */
export { SignJWT, createRemoteJWKSet, customFetch, errors, importPKCS8, jwtVerify } from 'jose';
