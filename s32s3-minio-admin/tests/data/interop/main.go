// Interop helper (not built by cargo): see ../README.md.
// Interop helper (not shipped): decrypts payloads with madmin.DecryptData, and makes id 0x01 / 0x02
// payloads with the real SDK pieces.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/minio/madmin-go"
	"github.com/secure-io/sio-go"
	"golang.org/x/crypto/argon2"
)

type rec struct {
	Password      string `json:"password"`
	PlaintextHex  string `json:"plaintext_hex"`
	CiphertextHex string `json:"ciphertext_hex"`
	Source        string `json:"source,omitempty"`
}

// madmin EncryptData's steps, on the ChaCha20-Poly1305 branch (taken by MinIO on CPUs without AES-NI).
func encryptChaCha(password string, data []byte) []byte {
	salt := make([]byte, 32)
	f, _ := os.Open("/dev/urandom")
	f.Read(salt)
	key := argon2.IDKey([]byte(password), salt, 1, 64*1024, 4, 32)
	stream, err := sio.ChaCha20Poly1305.Stream(key)
	if err != nil {
		panic(err)
	}
	nonce := make([]byte, stream.NonceSize())
	f.Read(nonce)
	var out bytes.Buffer
	out.Write(salt)
	out.WriteByte(0x01)
	out.Write(nonce)
	w := stream.EncryptWriter(&out, nonce, nil)
	w.Write(data)
	w.Close()
	return out.Bytes()
}

func main() {
	mode := os.Args[1]
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	enc := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		var r rec
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			panic(err)
		}
		pt, _ := hex.DecodeString(r.PlaintextHex)
		switch mode {
		case "decrypt":
			ct, _ := hex.DecodeString(r.CiphertextHex)
			got, err := madmin.DecryptData(r.Password, bytes.NewReader(ct))
			if err != nil || !bytes.Equal(got, pt) {
				fmt.Fprintf(os.Stderr, "FAIL id=%d len=%d err=%v\n", ct[32], len(pt), err)
				os.Exit(1)
			}
		case "encrypt": // id 0x02 with -tags fips, else 0x00
			ct, err := madmin.EncryptData(r.Password, pt)
			if err != nil {
				panic(err)
			}
			r.CiphertextHex = hex.EncodeToString(ct)
			enc.Encode(r)
		case "chacha":
			r.CiphertextHex = hex.EncodeToString(encryptChaCha(r.Password, pt))
			enc.Encode(r)
		}
	}
	if mode == "decrypt" {
		fmt.Println("all decrypted by madmin.DecryptData")
	}
}
