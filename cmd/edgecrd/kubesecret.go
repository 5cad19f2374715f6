package main

import (
	"fmt"
	"time"

	"github.com/edgecr/edgecr/server"
	"github.com/spf13/cobra"
)

func newKubeSecretCmd(io streams) *cobra.Command {
	var namespace, name string
	cmd := &cobra.Command{
		Use:   "kube-secret",
		Short: "Print a Kubernetes image pull Secret holding a new pull-only credential",
		Long: "kube-secret creates a pull-only identity named kube:<namespace>/<name> (listed by\n" +
			"`edgecrd clients ls`, ended by `edgecrd clients revoke`) and prints it as a\n" +
			"kubernetes.io/dockerconfigjson Secret for the registry endpoint:\n\n" +
			"  edgecrd kube-secret --namespace apps | kubectl apply -f -",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if namespace == "" {
				return fmt.Errorf("--namespace is required")
			}
			if err := server.ValidateKubeNames(namespace, name); err != nil {
				return err
			}
			st, err := loadState(cmd)
			if err != nil {
				return err
			}
			k, err := st.CreateKubeSecret(namespace, name, time.Now())
			if err != nil {
				return err
			}
			y, err := k.YAML()
			if err != nil {
				return err
			}
			_, err = io.Out.Write(y)
			return err
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "namespace of the Secret (required)")
	cmd.Flags().StringVar(&name, "name", server.DefaultKubeSecretName, "name of the Secret")
	return cmd
}
