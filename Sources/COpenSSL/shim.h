// OpenSSL's EVP cipher interface (libcrypto, Debian's libssl-dev): AES-128-CBC with AES-NI for
// the client-side encryption format of ks3sdk (Sources/ClientEncryption).
#include <openssl/crypto.h>
#include <openssl/evp.h>
