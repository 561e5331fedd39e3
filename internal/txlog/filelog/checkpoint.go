package filelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// checkpointName is the ack checkpoint's file name in the log directory.
const checkpointName = "ack.checkpoint"

// checkpointMagic starts a checkpoint file and names its format version.
const checkpointMagic = "SPLACK01"

// checkpointSize is the checkpoint file's length: magic, highest acked
// sequence number (u64 little-endian), CRC-32C of the two (u32).
const checkpointSize = len(checkpointMagic) + 8 + 4

// readCheckpoint returns the highest acknowledged sequence number recorded
// in dir, 0 if there is no checkpoint yet.
func readCheckpoint(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("filelog: read checkpoint: %w", err)
	}
	acked, err := decodeCheckpoint(b)
	if err != nil {
		return 0, &CorruptionError{Segment: checkpointName, Err: err}
	}
	return acked, nil
}

func decodeCheckpoint(b []byte) (uint64, error) {
	if len(b) != checkpointSize || string(b[:len(checkpointMagic)]) != checkpointMagic {
		return 0, errors.New("not an ack checkpoint")
	}
	body := b[:checkpointSize-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[checkpointSize-4:]) {
		return 0, errChecksum
	}
	return binary.LittleEndian.Uint64(body[len(checkpointMagic):]), nil
}

// writeCheckpoint records acked durably and atomically: a temporary file is
// written and synced, renamed over the checkpoint, and the directory is
// synced so the rename itself survives a crash.
func writeCheckpoint(dir string, dirFile *os.File, acked uint64) error {
	b := make([]byte, 0, checkpointSize)
	b = append(b, checkpointMagic...)
	b = binary.LittleEndian.AppendUint64(b, acked)
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))

	final := filepath.Join(dir, checkpointName)
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("filelog: write checkpoint: %w", err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("filelog: write checkpoint: %w", werr)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("filelog: rename checkpoint: %w", err)
	}
	if err := dirFile.Sync(); err != nil {
		return fmt.Errorf("filelog: sync directory: %w", err)
	}
	return nil
}
