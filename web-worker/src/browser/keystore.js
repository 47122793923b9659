// Ed25519 keys that no script can read: non-extractable WebCrypto keys, kept in IndexedDB (which
// stores a CryptoKey as it is, never its secret bytes). The page (the client key) and the compute
// worker (the worker key) both use this; see keystore.rs for the Rust side.
//
// openKey(name, seed, publicKey) returns the key kept under `name`, creating it first when there
// is none: imported from `seed` (a 32-byte Ed25519 seed the app kept in localStorage before this
// keystore existed, with its public key) or freshly generated. The result is
//   { held: { key: CryptoKey, publicKey: Uint8Array(32) } }
// or, where this browser cannot hold Ed25519 keys at all,
//   { unsupported: "<code>", detail: "<the browser's words>" }
// with code one of no-webcrypto, no-indexeddb, indexeddb-refused, no-ed25519, no-key-storage (the
// app words each in the person's language).
// "Unsupported" covers a browser without Ed25519 in WebCrypto, an IndexedDB it refuses to open for
// this site (private windows, storage blocked), and one that cannot store a CryptoKey
// (DataCloneError); in each case there is no held key to lose. Anything else that goes wrong (a
// broken database, a record that is not a key) throws: the caller must not quietly switch to a new
// identity then.

const DB_NAME = 'starling-keys';
const STORE = 'keys';
const ALGORITHM = { name: 'Ed25519' };
// The PKCS #8 wrapping of a 32-byte Ed25519 seed (RFC 8410): a fixed 16-byte prefix.
const PKCS8_PREFIX = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

function settle(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function openDatabase() {
  const request = indexedDB.open(DB_NAME, 1);
  request.onupgradeneeded = () => request.result.createObjectStore(STORE);
  return settle(request);
}

function valid(record) {
  return record && record.key instanceof CryptoKey && record.key.algorithm.name === 'Ed25519' &&
    !record.key.extractable && record.publicKey instanceof Uint8Array && record.publicKey.length === 32;
}

// Is `error` this browser saying it has no Ed25519 (or no WebCrypto) at all?
function unsupported(error) {
  return error && (error.name === 'NotSupportedError' || error.name === 'SyntaxError' && /Ed25519/i.test(error.message));
}

async function create(seed, publicKey) {
  if (seed) {
    const pkcs8 = new Uint8Array(48);
    pkcs8.set(PKCS8_PREFIX);
    pkcs8.set(seed, 16);
    const key = await crypto.subtle.importKey('pkcs8', pkcs8, ALGORITHM, false, ['sign']);
    return { key, publicKey: new Uint8Array(publicKey) };
  }
  const pair = await crypto.subtle.generateKey(ALGORITHM, false, ['sign', 'verify']);
  return { key: pair.privateKey, publicKey: new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey)) };
}

export async function openKey(name, seed, publicKey) {
  if (!globalThis.crypto || !crypto.subtle) return { unsupported: 'no-webcrypto', detail: 'no crypto.subtle' };
  if (!globalThis.indexedDB) return { unsupported: 'no-indexeddb', detail: 'no indexedDB' };
  let db;
  try {
    db = await openDatabase();
  } catch (error) {
    if (error && (error.name === 'InvalidStateError' || error.name === 'SecurityError')) {
      return { unsupported: 'indexeddb-refused', detail: `${error.name}: ${error.message}` };
    }
    throw error;
  }
  try {
    const found = await settle(db.transaction(STORE).objectStore(STORE).get(name));
    if (found !== undefined) {
      if (!valid(found)) throw new Error(`the stored ${name} key is not a usable Ed25519 key`);
      return { held: { key: found.key, publicKey: found.publicKey } };
    }
    let record;
    try {
      record = await create(seed, publicKey);
    } catch (error) {
      if (unsupported(error)) return { unsupported: 'no-ed25519', detail: `${error.name}: ${error.message}` };
      throw error;
    }
    // Another tab may have created one meanwhile: the first kept wins, in one transaction.
    const tx = db.transaction(STORE, 'readwrite');
    const store = tx.objectStore(STORE);
    const raced = await settle(store.get(name));
    if (raced !== undefined && !valid(raced)) throw new Error(`the stored ${name} key is not a usable Ed25519 key`);
    const kept = raced !== undefined ? raced : record;
    if (kept === record) {
      try {
        store.put(record, name);
      } catch (error) {
        tx.abort();
        if (error && error.name === 'DataCloneError') {
          return { unsupported: 'no-key-storage', detail: `${error.name}: ${error.message}` };
        }
        throw error;
      }
    }
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error('the key was not saved'));
    });
    return { held: { key: kept.key, publicKey: kept.publicKey } };
  } finally {
    db.close();
  }
}

export async function sign(key, bytes) {
  return new Uint8Array(await crypto.subtle.sign(ALGORITHM, key, bytes));
}
